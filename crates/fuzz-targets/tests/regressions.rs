//! Replays every fuzz target's seed corpus and every crasher found so far (`fuzz/regressions`),
//! then a short, deterministic mutation pass around the seeds — on stable Rust, in CI. The long
//! runs are libFuzzer's (`fuzz/run-all.sh`, docs/fuzzing.md).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::PathBuf;

fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    out
}

/// xorshift: the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\u0000",
    b"null",
    b"-1",
    b"1e308",
    b"18446744073709551616",
    b"_",
    b"/",
    b"..",
    b"%00",
    b"$",
    b"\xff",
    b"\xc3\x28",
];

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = rng.below(v.len() - i).min(16);
                v.drain(i..i + n);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(i..i, piece.iter().copied());
            }
            3 if !other.is_empty() => {
                let i = rng.below(v.len() + 1);
                let j = rng.below(other.len());
                v.splice(i..i, other[j..].iter().copied().take(64));
            }
            4 if !v.is_empty() && v.len() < 4096 => {
                // Repeat a slice: deep nesting and long arrays.
                let i = rng.below(v.len());
                let piece = v[i..(i + 8).min(v.len())].to_vec();
                for _ in 0..rng.below(64) {
                    v.splice(i..i, piece.iter().copied());
                }
            }
            _ => v.truncate(rng.below(v.len() + 1)),
        }
    }
    v
}

#[test]
fn every_target_has_seeds_and_survives_them_the_crashers_and_mutations() {
    for (name, target) in fuzz_targets::TARGETS {
        let seeds = inputs("corpus", name);
        assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
        let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
        assert!(
            fuzz_dir.join(format!("{name}.rs")).exists(),
            "no cargo-fuzz target for {name}"
        );
        for (path, bytes) in seeds.iter().chain(inputs("regressions", name).iter()) {
            let r = std::panic::catch_unwind(|| target(bytes));
            assert!(r.is_ok(), "{name} panicked on {}", path.display());
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        for i in 0..400 {
            let seed = &seeds[i % seeds.len()].1;
            let other = &seeds[rng.below(seeds.len())].1;
            let input = mutate(&mut rng, seed, other);
            let r = std::panic::catch_unwind(|| target(&input));
            assert!(
                r.is_ok(),
                "{name} panicked on a mutation: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}
