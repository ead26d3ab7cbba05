// Package topic owns MQTT topic rules for all of sockmq: validation of
// topic names and filters, matching (including the rule that wildcards in
// the first level never match topics starting with '$'), shared
// subscription filters, and the broker's reserved namespaces ($SYS,
// $presence, $sockmq): who may publish there and which retained topics are
// never written to disk.
//
// It is a leaf package: it imports only the standard library. Its
// functions are pure and safe for concurrent use; the matching functions
// do not allocate.
package topic
