//! The global allocator: mimalloc, asked through its plain entry points whenever they already
//! give the alignment a layout needs.
//!
//! The `mimalloc` crate sends every request through `mi_malloc_aligned`. In mimalloc 2 and 3
//! that function keeps a fast path only for small blocks that happen to be aligned; a larger
//! block whose size class is not a power of two (a request or answer buffer, a boxed future,
//! a grown `Vec`) falls through to a generic path that over-allocates and searches for an
//! aligned address: about 230 instructions where `mi_malloc` takes about 40, eighteen times per
//! proxied request. Every mimalloc block is aligned to 16 bytes when its size class is a
//! multiple of 16, and to 8 otherwise (size classes are multiples of 8), so a layout whose
//! alignment is at most 16 and divides its size is served by `mi_malloc` as it is. Only
//! layouts that ask for more (cache-padded structures) take the aligned functions.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The largest alignment a plain mimalloc block always has (`MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

/// Whether a block of `size` bytes from the plain functions is aligned to `align`.
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && size.is_multiple_of(align)
}

/// mimalloc, as the global allocator.
pub struct MiMalloc;

// SAFETY: every function forwards to mimalloc, which returns blocks of at least the requested
// size aligned as `plain` states (or, through the `_aligned` functions, as requested), null on
// failure, and frees or resizes any block it returned, plain or aligned, through `mi_free` and
// `mi_realloc`/`mi_realloc_aligned`.
unsafe impl GlobalAlloc for MiMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarding to mimalloc's allocation functions (see the impl's note).
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from one of mimalloc's functions above, which `mi_free` takes
        // whether the block was allocated aligned or not.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; a resized block keeps the
        // alignment `plain` guarantees, or is resized by the aligned function otherwise.
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_the_alignment_their_layouts_ask_for() {
        let sizes = [
            1usize,
            7,
            8,
            12,
            16,
            24,
            40,
            48,
            100,
            1000,
            1500,
            3000,
            70_000,
            1 << 20,
        ];
        for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for &size in &sizes {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                // SAFETY: non-zero sizes; each block is written, resized and freed with the
                // layout it was made with.
                unsafe {
                    for zeroed in [false, true] {
                        let p = if zeroed {
                            MiMalloc.alloc_zeroed(layout)
                        } else {
                            MiMalloc.alloc(layout)
                        };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size}, align {align}");
                        if zeroed {
                            assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                        }
                        p.write_bytes(0xab, size);
                        let grown = MiMalloc.realloc(p, layout, size * 3 + 5);
                        assert!(!grown.is_null());
                        assert_eq!(grown as usize % align, 0, "grown {size}, align {align}");
                        assert!(
                            std::slice::from_raw_parts(grown, size)
                                .iter()
                                .all(|&b| b == 0xab)
                        );
                        let grown_layout = Layout::from_size_align(size * 3 + 5, align).unwrap();
                        let shrunk = MiMalloc.realloc(grown, grown_layout, size.div_ceil(2));
                        assert_eq!(shrunk as usize % align, 0, "shrunk {size}, align {align}");
                        MiMalloc.dealloc(
                            shrunk,
                            Layout::from_size_align(size.div_ceil(2), align).unwrap(),
                        );
                    }
                }
            }
        }
    }
}
