//! What the end of every saving request allocates, counted: the encoded session data and the
//! `Set-Cookie` value are one allocation each, of exactly their bytes.
//!
//! A binary of its own because it counts every allocation of the process (a global allocator):
//! one test function, so no other test allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use cloakroom::codec::Codec;
use cloakroom::engines::memory::MemoryStore;
use cloakroom::{Sessions, Settings};

/// Counts allocation calls.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator with the same layout; the counter is
// only bookkeeping. (`unsafe` is needed to implement `GlobalAlloc`; the library forbids it.)
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How many allocations `f` makes, on its second run (the first fills per-thread buffers).
fn allocations<T>(mut f: impl FnMut() -> T) -> usize {
    drop(f());
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let out = f();
    let made = ALLOCATIONS.load(Ordering::Relaxed) - before;
    drop(out);
    made
}

/// The allocations of one returning visitor's counter request on the in-process store,
/// cookie to `Set-Cookie`: a budget that a change to the request path must not raise.
/// Measured when set: 18 (the encoded data and the `Set-Cookie` value were one each; each had
/// been two).
const COUNTER_REQUEST_BUDGET: usize = 18;

#[test]
fn saved_data_and_its_cookie_are_one_allocation_each() {
    let mut data = serde_json::Map::new();
    data.insert("visits".into(), serde_json::Value::from(41));
    data.insert("cart".into(), serde_json::json!(["tea", "cups"]));
    let encoded = allocations(|| Codec::Json.encode(&data).unwrap());
    assert_eq!(encoded, 1, "the JSON of a small session");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let sessions = Sessions::new(MemoryStore::new(10_000), Settings::default()).unwrap();
    let mut cookie = None;
    let mut request = || {
        runtime.block_on(async {
            let lazy = sessions.start(cookie.as_deref());
            let session = lazy.load().await.unwrap();
            session.update("visits", |n: &mut u64| *n += 1).unwrap();
            let headers = lazy.finish(200).await.unwrap();
            if cookie.is_none() {
                let set = headers
                    .into_iter()
                    .find(|(name, _)| name == "set-cookie")
                    .unwrap();
                let value = set.1.to_str().unwrap();
                cookie = Some(value["sessionid=".len()..value.find(';').unwrap()].to_owned());
            }
        })
    };
    request();
    let made = allocations(&mut request);
    println!("a counter request made {made} allocations");
    assert!(
        made <= COUNTER_REQUEST_BUDGET,
        "a counter request made {made} allocations, over its budget of {COUNTER_REQUEST_BUDGET}"
    );
}
