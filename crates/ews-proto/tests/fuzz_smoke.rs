//! CI-sized smoke run of the `ews_request` fuzz target on stable, without libFuzzer: the seed
//! corpus of `fuzz/corpus/ews_request/` and a few thousand deterministic mutations go through the
//! same property as the fuzz target (`fuzz/checks/ews_request.rs`). See `fuzz/README.md` for the
//! real fuzzer.

#[path = "../../../fuzz/checks/ews_request.rs"]
mod ews_request;
#[path = "../../../fuzz/smoke/mutate.rs"]
mod mutate;

#[test]
fn the_request_decoder_survives_its_seed_corpus_and_4000_mutations_without_panicking() {
    let ran = mutate::run(
        "ews_request",
        4000,
        0x0E75_0D3C_0DE5_EED5,
        ews_request::check,
    );
    assert!(ran > 4000);
}
