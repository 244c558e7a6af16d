//! The uniffi code generator at exactly the version the bindings use
//! (`bindings/generate` runs it in library mode).
fn main() {
    uniffi::uniffi_bindgen_main()
}
