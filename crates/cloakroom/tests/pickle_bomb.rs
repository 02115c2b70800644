//! Pickle bombs (issue 14, point 1): a few KB of memo references that name a value billions
//! of times are refused as corrupt data, quickly and without allocating what they expand to.
//!
//! A binary of its own because it counts every allocation of the process (a global allocator):
//! one test function, so no other test allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cloakroom::codec::{Codec, DecodeError};

/// Counts the bytes live now and the most live since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator with the same layout; the counters are
// only bookkeeping. (`unsafe` is needed to implement `GlobalAlloc`; the library forbids it.)
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                + (new_size - layout.size());
            PEAK.fetch_max(live, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `{'k': v}` where `v0` is a string of `leaf` bytes and `v(i+1)` is a list of `fanout` memo
/// references (`BINGET`) to `vi`, `levels` deep: about 2·fanout bytes per level, and
/// fanout^levels strings once expanded. Python's `pickle.dumps` writes the same shape for
/// `a = 'x' * 1000; for _ in range(30): a = [a, a]` (1,205 bytes).
fn memo_bomb(levels: u8, fanout: usize, leaf: u32) -> Vec<u8> {
    let mut out = b"\x80\x02}X\x01\x00\x00\x00k".to_vec();
    out.push(b'X');
    out.extend_from_slice(&leaf.to_le_bytes());
    out.extend(std::iter::repeat_n(b'x', leaf as usize));
    out.extend_from_slice(b"q\x000");
    for level in 0..levels {
        out.push(b'(');
        for _ in 0..fanout {
            out.extend_from_slice(&[b'h', level]);
        }
        out.extend_from_slice(&[b'l', b'q', level + 1, b'0']);
    }
    out.extend_from_slice(&[b'h', levels, b's', b'.']);
    out
}

/// The same expansion through `DUP`, with no memo: `levels` marks, a string, then `DUP` and
/// `LIST` `levels` times, each turning the value on top into a list of two of it.
fn dup_bomb(levels: usize) -> Vec<u8> {
    let mut out = b"\x80\x02}X\x01\x00\x00\x00k".to_vec();
    out.extend(std::iter::repeat_n(b'(', levels));
    out.extend_from_slice(b"X\x01\x00\x00\x00x");
    for _ in 0..levels {
        out.extend_from_slice(b"2l");
    }
    out.extend_from_slice(b"s.");
    out
}

#[test]
fn pickle_memo_bomb_is_refused_quickly_and_small() {
    let bombs = [
        ("1.2 KB, 2^30 strings of 1000 bytes", memo_bomb(30, 2, 1000)),
        ("16 KB, 255^30 one-byte strings", memo_bomb(30, 255, 1)),
        ("DUP, 2^40 strings", dup_bomb(40)),
    ];
    let codec = Codec::DjangoCache;
    for (name, bomb) in bombs {
        assert!(bomb.len() < 17_000, "{name}: {} bytes", bomb.len());
        // The record text is base64, as a store hands it to the codec.
        let text = STANDARD.encode(&bomb);
        let baseline = LIVE.load(Ordering::Relaxed);
        PEAK.store(baseline, Ordering::Relaxed);
        let started = Instant::now();
        let result = codec.decode(&text);
        let took = started.elapsed();
        let extra = PEAK.load(Ordering::Relaxed) - baseline;
        assert!(
            matches!(result, Err(DecodeError::Pickle(_))),
            "{name}: not refused as corrupt data: {result:?}"
        );
        assert!(
            took < Duration::from_millis(10),
            "{name}: took {took:?} (bound: 10 ms)"
        );
        assert!(
            extra < 1 << 20,
            "{name}: {extra} bytes allocated (bound: 1 MiB)"
        );
        eprintln!(
            "{name}: {} bytes refused in {took:?}, {extra} bytes allocated",
            bomb.len()
        );
    }
}
