// A plain socketcluster-server for side-by-side benchmarks (scripts/bench.sh):
// an http server with socketClusterServer.attach and default options, so
// clients publish through the server's default exchange (AGSimpleBroker),
// which fans out to subscribed sockets, exactly as a stock SocketCluster
// deployment does. Listens on 127.0.0.1 only.
//
// Usage: node sc-server.js [port]   (default 8000; 0 picks a free port)
// Prints "LISTENING <port> <pid>" once ready. Stops on SIGINT/SIGTERM.
'use strict';

const http = require('http');
const socketClusterServer = require('socketcluster-server');

const port = Number(process.argv[2] || process.env.PORT || 8000);
const httpServer = http.createServer();
const agServer = socketClusterServer.attach(httpServer);

// Drain the error stream so that a misbehaving socket is logged, not fatal.
(async () => {
  for await (const { error } of agServer.listener('error')) {
    console.error('sc-server error:', error && error.message);
  }
})();

httpServer.listen(port, '127.0.0.1', () => {
  console.log(`LISTENING ${httpServer.address().port} ${process.pid}`);
});

function stop() {
  agServer.close();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
