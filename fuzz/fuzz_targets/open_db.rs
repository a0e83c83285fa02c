//! Arbitrary bytes opened as a database and walked: check, stats, the page map, every page dumped,
//! every tree read both ways, then written to and committed. The first byte picks the image: the
//! bytes themselves, or a sound database with the bytes applied as patches (page, offset, bytes),
//! each patched page resealed with a correct checksum (forged) or not (flipped).
#![no_main]

use folio_fuzz::{Input, open_and_walk, sound_image};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    match input.byte() % 4 {
        0 => open_and_walk(input.take(usize::MAX)),
        mode => {
            let mut image = sound_image().to_vec();
            let pages = image.len() / 512;
            while !input.is_empty() {
                let page = input.u16() as usize % pages;
                let offset = input.u16() as usize % 512;
                let len = (input.byte() % 16) as usize;
                let at = page * 512 + offset;
                let patch = input.take(len);
                let end = (at + patch.len()).min(image.len());
                image[at..end].copy_from_slice(&patch[..end - at]);
                if mode != 1 {
                    // Meta pages are sealed over their first 96 bytes, other pages whole.
                    let sealed = if page < 2 { 96 } else { 512 };
                    folio::fuzzing::seal(&mut image[page * 512..page * 512 + sealed]);
                }
            }
            open_and_walk(&image);
        }
    }
});
