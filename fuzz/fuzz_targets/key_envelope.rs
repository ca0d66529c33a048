#![no_main]
// The body is gateway::fuzzing::key_envelope, shared with the corpus replay test (tests/tests/fuzz_corpora.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzzing::key_envelope(data));
