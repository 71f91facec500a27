//! CI-sized smoke runs of the `sdp_answer` and `digest_challenge` fuzz targets on stable, without
//! libFuzzer: each seed corpus under `fuzz/corpus/` and a few thousand deterministic mutations go
//! through the same property as the fuzz target (`fuzz/checks/`). See `fuzz/README.md` for the
//! real fuzzer.

#[path = "../../../fuzz/checks/digest_challenge.rs"]
mod digest_challenge;
#[path = "../../../fuzz/smoke/mutate.rs"]
mod mutate;
#[path = "../../../fuzz/checks/sdp_answer.rs"]
mod sdp_answer;

#[test]
fn the_sdp_answer_parser_survives_its_seed_corpus_and_4000_mutations_without_panicking() {
    let ran = mutate::run("sdp_answer", 4000, 0x5D9A_115E_ED00_0001, sdp_answer::check);
    assert!(ran > 4000);
}

#[test]
fn the_digest_challenge_parser_survives_its_seed_corpus_and_4000_mutations_without_panicking() {
    let ran = mutate::run(
        "digest_challenge",
        4000,
        0xD16E_57C4_A11E_0001,
        digest_challenge::check,
    );
    assert!(ran > 4000);
}
