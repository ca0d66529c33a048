#![no_main]
// The body is gateway::fuzzing::quarantine_list, shared with the corpus replay test (tests/tests/fuzz_corpora.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::quarantine_list(data));
