#![no_main]
// The body is gateway::fuzzing::audit_entry, shared with the corpus replay test (tests/tests/fuzz_corpora.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::audit_entry(data));
