// Package store is sockmq's embedded persistence: persistent MQTT sessions
// (with their subscriptions, queued and in-flight messages and inbound
// QoS 2 state) and retained messages, in a bbolt file with sockmq's own
// record format and a schema version.
//
// # Promise
//
// Writes are queued with [Store.Write], which returns the sequence number
// of the batch holding them. One writer goroutine commits batches in order,
// each in one transaction (fsynced when Options.Sync is set), and then
// advances the committed watermark. A caller that must not acknowledge
// something before it is stored registers a [Waiter] for its sequence
// number with [Store.Wait]; waiters are called once the batch is committed.
// Many clients' writes share one transaction and one fsync (group commit).
// If a commit fails (disk full, I/O error) the batch is retried with
// backoff and waiters keep waiting: nothing is reported stored that is not.
//
// A message body is written once and referenced by every session queue
// that holds it and by the retained index; [Writer.Ref] and [Writer.Unref]
// keep a reference count (in memory, rebuilt on load) so that a body is
// deleted with its last reference.
//
// bbolt reads the file through a memory map whose pages stay resident once
// read; [Store.ReleaseMemory] drops them from the process's RSS (Linux;
// elsewhere it does nothing), for the broker's memory trimmer.
//
// # Concurrency
//
// All methods are safe for concurrent use. The function passed to
// [Store.Write] runs under the store's lock: it must only append writes and
// never take other locks or block. Waiters run on the writer goroutine and
// must not block.
package store
