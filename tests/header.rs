//! The checked-in C header must match what cbindgen generates from src/ffi/.
//! Regenerate with `LLMPOOL_BLESS=1 cargo test --test header`.

use std::path::PathBuf;

#[test]
fn header_is_fresh() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = root.join("include/llmpool.h");
    if std::env::var_os("LLMPOOL_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "include/llmpool.h is stale: run `LLMPOOL_BLESS=1 cargo test --test header` and commit it"
    );
    for name in [
        "llmpool_client_new",
        "llmpool_chat",
        "llmpool_response_free",
        "LLMPOOL_PANIC = 99",
    ] {
        assert!(generated.contains(name), "header lacks {name}");
    }
}
