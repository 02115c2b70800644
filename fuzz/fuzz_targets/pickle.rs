//! Any bytes as a pickled cache value (`data_format = "django"` on the `cache` engine): reading
//! never panics, never allocates past libFuzzer's `-malloc_limit_mb` (scripts/fuzz-smoke.sh
//! runs this target with a memory limit, so a pickle bomb fails the run), and a dict that
//! loads pickles back (protocol 2) to the same data.
#![no_main]

use cloakroom::pickle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = pickle::loads(data) {
        let again = pickle::loads(&pickle::dumps(&decoded)).expect("our own pickle loads");
        assert_eq!(again, decoded);
    }
});
