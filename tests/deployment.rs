//! deploy/production describes a deployment an operator can follow: make-secrets.sh makes every
//! file compose.yaml mounts (and changes nothing when run again), and every setting and
//! environment variable the descriptions name exists in `vigil config` (deploy/production/check.py).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use vigil_runtime::config::ClickHouseRole;

fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_production_deployment_names_only_what_vigil_has_and_its_secrets_can_be_made() {
    let dir = std::env::temp_dir().join(common::unique("production"));
    std::fs::create_dir_all(&dir).unwrap();
    let make = || {
        let output = Command::new(common::repo_path("deploy/production/make-secrets.sh"))
            .arg(&dir)
            .output()
            .expect("make-secrets.sh runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    make();
    let made = contents(&dir);
    make();
    assert_eq!(made, contents(&dir), "a second run changes nothing");

    // The roles' passwords vigil reads are the ones made.
    let credentials =
        String::from_utf8(made["secrets/clickhouse/credentials.env"].clone()).unwrap();
    for role in [
        ClickHouseRole::Admin,
        ClickHouseRole::Writer,
        ClickHouseRole::Reader,
    ] {
        assert!(
            credentials.contains(&format!("{}=", role.password_variable())),
            "{credentials}"
        );
    }
    // Kafka reads its key and certificate from one PEM file; the key is PKCS#8.
    let kafka = String::from_utf8(made["tls/kafka-1.pem"].clone()).unwrap();
    assert!(kafka.starts_with("-----BEGIN PRIVATE KEY-----") && kafka.contains("CERTIFICATE"));

    let output = Command::new("python3")
        .arg(common::repo_path("deploy/production/check.py"))
        .arg(env!("CARGO_BIN_EXE_vigil"))
        .arg(&dir)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("deploy/production: 0 problems"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
