//! What the end of every saving request allocates, counted: the encoded session data and the
//! `Set-Cookie` value are one allocation each, of exactly their bytes.
//!
//! A binary of its own because it counts every allocation of the process (a global allocator):
//! one test function, so no other test allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use cloakroom::codec::Codec;
use cloakroom::engines::memory::MemoryStore;
use cloakroom::{Ending, Finishing, HttpResponses, Sessions, Settings};

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

/// One test function: the counter is the process's, so nothing else may allocate meanwhile.
#[test]
fn the_end_of_a_request_allocates_only_what_it_sends() {
    saved_data_and_its_cookie_are_one_allocation_each();
    a_read_only_request_ends_without_a_future_or_an_allocation();
    the_adapters_future_adds_no_allocation_to_a_read();
}

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
    // Counted inside the future: `block_on` may box a large future, which is the test's
    // doing, not the request's.
    let mut cookie = None;
    let mut request = || {
        runtime.block_on(async {
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let lazy = sessions.start(cookie.as_deref());
            let session = lazy.load().await.unwrap();
            session.update("visits", |n: &mut u64| *n += 1).unwrap();
            let headers = lazy.finish(200).await.unwrap();
            let made = ALLOCATIONS.load(Ordering::Relaxed) - before;
            if cookie.is_none() {
                let set = headers
                    .into_iter()
                    .find(|(name, _)| name == "set-cookie")
                    .unwrap();
                let value = set.1.to_str().unwrap();
                cookie = Some(value["sessionid=".len()..value.find(';').unwrap()].to_owned());
            }
            made
        })
    };
    request();
    let made = request();
    println!("a counter request made {made} allocations");
    assert!(
        made <= COUNTER_REQUEST_BUDGET,
        "a counter request made {made} allocations, over its budget of {COUNTER_REQUEST_BUDGET}"
    );
}

/// A runtime, the in-process store, and a visitor with one visit saved there: the key its
/// cookie carries. The save goes through `finishing`, which hands a new session's save over to
/// await.
fn returning_visitor() -> (tokio::runtime::Runtime, Sessions, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let sessions = Sessions::new(MemoryStore::new(10_000), Settings::default()).unwrap();
    let cookie = runtime.block_on(async {
        let lazy = sessions.start(None);
        lazy.load().await.unwrap().insert("visits", 1).unwrap();
        let Finishing::Saving(saving) = lazy.finishing(200) else {
            panic!("a new session is saved")
        };
        let headers: Vec<_> = saving.await.unwrap().into_iter().collect();
        let value = headers[1].1.to_str().unwrap().to_owned();
        value["sessionid=".len()..value.find(';').unwrap()].to_owned()
    });
    (runtime, sessions, cookie)
}

/// A request that only reads its session ends at once, without a future or an allocation
/// (`LazySession::finishing`, as the tower layer ends every request); one that saves gets the
/// save to await, and it stores.
fn a_read_only_request_ends_without_a_future_or_an_allocation() {
    let (runtime, sessions, cookie) = returning_visitor();
    for _ in 0..2 {
        let (made, ended) = runtime.block_on(async {
            let lazy = sessions.start(Some(&cookie));
            let visits: u64 = lazy.load().await.unwrap().get_or("visits", 0).unwrap();
            assert_eq!(visits, 1);
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let ended = lazy.finishing(200);
            (ALLOCATIONS.load(Ordering::Relaxed) - before, ended)
        });
        let Finishing::Ready(Ok(headers)) = ended else {
            panic!("a read ends at once: {ended:?}")
        };
        let sent: Vec<_> = headers.into_iter().collect();
        assert_eq!(sent.len(), 1, "Vary: Cookie only: {sent:?}");
        assert_eq!(made, 0, "the end of a read-only request allocates nothing");
    }
}

/// The future both adapters return (`Ending`: the tower layer's `SessionFuture`, the actix-web
/// middleware's future) runs the handler's future in place and ends a read-only request in the
/// same poll: from the handler's answer to the response sent, nothing is allocated.
fn the_adapters_future_adds_no_allocation_to_a_read() {
    let (runtime, sessions, cookie) = returning_visitor();
    for _ in 0..2 {
        let (made, response) = runtime.block_on(async {
            let lazy = sessions.start(Some(&cookie));
            let visits: u64 = lazy.load().await.unwrap().get_or("visits", 0).unwrap();
            // With a header, as a handler's response has: a first header would allocate the
            // response's own map.
            let answered = http::Response::builder()
                .header("content-type", "text/plain")
                .body(visits.to_string())
                .unwrap();
            // The handler has answered (its future is ready): what is counted is the end.
            let handler = std::future::ready(Ok::<_, std::convert::Infallible>(answered));
            let ending = Ending::<_, HttpResponses<String>>::new(handler, lazy);
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let response = ending.await;
            (ALLOCATIONS.load(Ordering::Relaxed) - before, response)
        });
        let Ok(response) = response;
        assert_eq!(response.body(), "1");
        assert_eq!(response.headers()["vary"], "Cookie");
        assert!(response.headers().get("set-cookie").is_none());
        assert_eq!(made, 0, "the end of a read-only request allocates nothing");
    }
}
