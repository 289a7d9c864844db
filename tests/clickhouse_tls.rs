//! ClickHouse over HTTPS: a server of the test's own (ClickHouse 18.16) serving HTTPS with a
//! certificate from a local CA (deploy/local/services.sh, VIGIL_CLICKHOUSE_HTTPS_PORT). Vigil
//! trusts the CA named by SSL_CERT_FILE, migrates as the administrator and runs the pipeline with
//! the writer's own user over HTTPS; a client that does not trust the CA is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{OwnClickHouse, TestEnv};

const DATABASE: &str = "vigil_tls";

#[test]
fn the_pipeline_lands_its_rows_over_https_and_an_untrusted_server_is_refused() {
    let server = OwnClickHouse::start_https("tls", DATABASE);
    let https = server.https_url().unwrap();
    // The test reads over plain HTTP; every vigil process over HTTPS.
    let mut env = TestEnv::on_clickhouse_database("tls", DATABASE, 2, &server);
    env.set_override("VIGIL_CLICKHOUSE__URL", &https);

    // Without the CA: the certificate is not trusted, nothing is sent.
    let (ok, _, output) = env.try_command(env.vigil(&["migrate"]), Duration::from_secs(60));
    assert!(!ok, "an untrusted server was used:\n{output}");
    assert!(
        output.to_lowercase().contains("certificate"),
        "the reason is the certificate: {output}"
    );

    env.set_override("SSL_CERT_FILE", server.ca_file().to_str().unwrap());
    env.run_vigil(&["migrate"], Duration::from_secs(60));
    env.run_vigil(&["topics"], Duration::from_secs(60));
    env.run_vigil(
        &[
            "up",
            "--simulate",
            "--patients",
            "150",
            "--hospitals",
            "2",
            "--days",
            "120",
            "--seed",
            "4",
            "--until-idle",
            "3",
        ],
        Duration::from_secs(600),
    );
    let landed = env.scalar("SELECT count() FROM {db}.clinical_events");
    assert!(
        landed.parse::<u64>().unwrap() > 500,
        "{landed} events landed"
    );
    assert_ne!(env.scalar("SELECT count() FROM {db}.patient_status"), "0");
    let output = env.run_vigil(&["publish"], Duration::from_secs(60));
    assert!(output.contains("outcome-metric cells"), "{output}");
    // The rows were landed by the writer's role, not the administrator.
    env.admin("SYSTEM FLUSH LOGS");
    let landers = env.scalar(
        "SELECT groupUniqArray(user) FROM system.query_log \
         WHERE type = 2 AND query LIKE 'INSERT INTO%clinical_events%'",
    );
    assert_eq!(landers, "['vigil_writer']");
}
