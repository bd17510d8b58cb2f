//! `cargo xtask oci`: packages the built filter as an OCI image in Istio's Wasm image format,
//! without a Docker engine: an OCI image layout directory (`target/oci/layout/`) and the same as
//! a tarball (`target/oci/vllm-gateway-filter.tar`), ready for `oras`, `skopeo` or `crane`.
//!
//! One layer, the raw module (`application/vnd.module.wasm.content.layer.v1+wasm`), and a config
//! of type `application/vnd.module.wasm.config.v1+json`; every blob is named by its sha256.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gateway_workspace::paths;
use sha2::{Digest, Sha256};

/// Media type of the wasm module layer.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// Media type of the image config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// Media type of the manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// `cargo xtask oci` options.
#[derive(Debug, clap::Args)]
pub struct OciArgs {
    /// The image tag recorded in the layout's index (`org.opencontainers.image.ref.name`).
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    tag: String,
}

/// Builds the filter if missing, then writes the layout and the tarball under `target/oci/`.
pub fn run(args: &OciArgs) -> Result<()> {
    let wasm = paths::filter_wasm_path();
    if !wasm.is_file() {
        crate::setup::run()?;
        crate::build::run()?;
    }
    let out = paths::target_dir().join("oci");
    let module = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let manifest = write_layout(&module, &args.tag, &out.join("layout"))?;
    write_tar(&out.join("layout"), &out.join("vllm-gateway-filter.tar"))?;
    println!("OCI image {} ({manifest}) in {}", args.tag, out.display());
    Ok(())
}

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": digest(bytes), "size": bytes.len() })
}

fn write_blob(layout: &Path, bytes: &[u8]) -> Result<()> {
    let d = digest(bytes);
    let path = layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Writes an OCI image layout for `module` into `layout` (replacing it); returns the manifest digest.
pub fn write_layout(module: &[u8], tag: &str, layout: &Path) -> Result<String> {
    if layout.exists() {
        std::fs::remove_dir_all(layout)?;
    }
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    let config = serde_json::to_vec(&serde_json::json!({
        "type": "envoy_proxy",
        "abiVersions": ["v0.2.1"],
        "rootIds": ["vllm_gateway"],
    }))?;
    let mut layer = descriptor(LAYER_MEDIA_TYPE, module);
    layer["annotations"] = serde_json::json!({ "org.opencontainers.image.title": "plugin.wasm" });
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, &config),
        "layers": [layer],
    }))?;
    for blob in [module, &config, &manifest] {
        write_blob(layout, blob)?;
    }
    let mut entry = descriptor(MANIFEST_MEDIA_TYPE, &manifest);
    entry["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
    let index = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry] });
    std::fs::write(layout.join("index.json"), serde_json::to_vec_pretty(&index)?)?;
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(digest(&manifest))
}

/// Every file under `dir`, relative, sorted (so the tarball is reproducible).
fn files_under(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            files_under(dir, &path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// One ustar header for a regular file (mode 0644, time 0, owner 0).
fn tar_header(name: &str, size: usize) -> Result<[u8; 512]> {
    if name.len() > 100 {
        bail!("path too long for a tar header: {name}");
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
        let s = format!("{v:0width$o}\0", width = len - 1);
        h[at..at + len].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size as u64);
    octal(&mut h, 136, 12, 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// Writes the files of `dir` into an uncompressed tarball (paths relative to `dir`).
pub fn write_tar(dir: &Path, tar: &Path) -> Result<()> {
    let mut files = Vec::new();
    files_under(dir, Path::new(""), &mut files)?;
    let mut out = Vec::new();
    for rel in files {
        let bytes = std::fs::read(dir.join(&rel))?;
        out.extend_from_slice(&tar_header(&rel.to_string_lossy(), bytes.len())?);
        out.extend_from_slice(&bytes);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    std::fs::write(tar, out).with_context(|| format!("writing {}", tar.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_json(path: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn blob(layout: &Path, descriptor: &serde_json::Value) -> Vec<u8> {
        let d = descriptor["digest"].as_str().unwrap();
        let bytes =
            std::fs::read(layout.join("blobs/sha256").join(d.trim_start_matches("sha256:")))
                .unwrap();
        assert_eq!(digest(&bytes), d, "blob content does not match its name");
        assert_eq!(descriptor["size"].as_u64(), Some(bytes.len() as u64));
        bytes
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn layout_has_istio_wasm_media_types_and_correct_digests() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        let module = b"\0asm\x01\0\0\0 not really a module".to_vec();
        let manifest_digest = write_layout(&module, "1.2.3", &layout).unwrap();
        assert_eq!(read_json(&layout.join("oci-layout"))["imageLayoutVersion"], "1.0.0");
        let index = read_json(&layout.join("index.json"));
        let entry = &index["manifests"][0];
        assert_eq!(entry["digest"].as_str(), Some(manifest_digest.as_str()));
        assert_eq!(entry["annotations"]["org.opencontainers.image.ref.name"], "1.2.3");
        let manifest: serde_json::Value = serde_json::from_slice(&blob(&layout, entry)).unwrap();
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        let config: serde_json::Value =
            serde_json::from_slice(&blob(&layout, &manifest["config"])).unwrap();
        assert_eq!(config["rootIds"][0], "vllm_gateway");
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(blob(&layout, &layers[0]), module);
        let blobs = std::fs::read_dir(layout.join("blobs/sha256")).unwrap().count();
        assert_eq!(blobs, 3, "module, config, manifest");
    }

    #[test]
    fn tarball_holds_every_layout_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        write_layout(b"\0asm", "t", &layout).unwrap();
        let tar = dir.path().join("image.tar");
        write_tar(&layout, &tar).unwrap();
        let bytes = std::fs::read(&tar).unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let mut names = Vec::new();
        let mut at = 0;
        while at + 512 <= bytes.len() && bytes[at] != 0 {
            let h = &bytes[at..at + 512];
            let name = String::from_utf8_lossy(&h[..100]).trim_end_matches('\0').to_owned();
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&h[124..135]).trim(), 8).unwrap();
            let stored: u64 =
                u64::from_str_radix(String::from_utf8_lossy(&h[148..154]).trim(), 8).unwrap();
            let mut blank = h.to_vec();
            blank[148..156].copy_from_slice(b"        ");
            assert_eq!(
                stored,
                blank.iter().map(|&b| u64::from(b)).sum::<u64>(),
                "checksum of {name}"
            );
            assert_eq!(
                &bytes[at + 512..at + 512 + size],
                &std::fs::read(layout.join(&name)).unwrap()[..],
                "{name}"
            );
            names.push(name);
            at += 512 + size.div_ceil(512) * 512;
        }
        assert!(
            names.contains(&"index.json".to_owned()) && names.contains(&"oci-layout".to_owned()),
            "{names:?}"
        );
        assert_eq!(names.iter().filter(|n| n.starts_with("blobs/sha256/")).count(), 3);
    }
}
