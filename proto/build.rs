// Generates the prost messages from pkcs11.proto with a vendored protoc, so no
// system protoc is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    println!("cargo:rerun-if-changed=pkcs11.proto");
    prost_build::Config::new().compile_protos(&["pkcs11.proto"], &["."])?;
    Ok(())
}
