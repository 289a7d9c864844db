//! Kafka with authentication: Tansu started to require SASL SCRAM-SHA-512 from every client. The
//! whole pipeline runs with credentials given in the environment (librdkafka properties, one
//! key each); a client without credentials, or with a wrong password, is refused and says which
//! broker it could not use. Then the same over TLS: Tansu 0.6.0's own TLS listener cannot be
//! started, so deploy/local/services.sh puts a TLS terminator (socat, a local CA's certificate)
//! in front of it and Tansu advertises that port; the pipeline runs over SASL_SSL trusting the
//! CA, and a client that does not trust it, or speaks plain TCP, gets nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{OwnBroker, TestEnv};

const USER: &str = "vigil-stages";
const PASSWORD: &str = "Pw-for-tests-0nly";

fn credentials(env: &mut TestEnv, password: &str) {
    credentials_over(env, "SASL_PLAINTEXT", password);
}

fn credentials_over(env: &mut TestEnv, protocol: &str, password: &str) {
    env.set_override(
        "VIGIL_KAFKA__CLIENT_PROPERTIES__SECURITY_PROTOCOL",
        protocol,
    );
    env.set_override(
        "VIGIL_KAFKA__CLIENT_PROPERTIES__SASL_MECHANISMS",
        "SCRAM-SHA-512",
    );
    env.set_override("VIGIL_KAFKA__CLIENT_PROPERTIES__SASL_USERNAME", USER);
    env.set_override("VIGIL_KAFKA__CLIENT_PROPERTIES__SASL_PASSWORD", password);
}

#[test]
fn the_pipeline_runs_authenticated_and_a_client_without_credentials_is_refused() {
    let broker = OwnBroker::start_with_users("sasl", &[(USER, PASSWORD)]);
    let services = common::services();
    let mut env = TestEnv::on_own_services(
        "sasl",
        2,
        "",
        &broker.brokers(),
        &services.clickhouse_url,
        &services.clickhouse_credentials,
    );
    env.run_vigil(&["migrate"], Duration::from_secs(60));

    // No credentials: refused, naming the broker.
    let (ok, _, output) = env.try_command(env.vigil(&["topics"]), Duration::from_secs(60));
    assert!(!ok, "an anonymous client was served:\n{output}");
    assert!(output.contains(&broker.brokers()), "{output}");

    // A wrong password: refused too.
    credentials(&mut env, "not-the-password");
    let (ok, _, output) = env.try_command(env.vigil(&["topics"]), Duration::from_secs(60));
    assert!(!ok, "a wrong password was accepted:\n{output}");

    // The stages' own credentials: the whole pipeline, from change events to ClickHouse.
    credentials(&mut env, PASSWORD);
    run_pipeline(&env);
}

#[test]
fn the_pipeline_runs_over_tls_with_scram_and_an_untrusting_or_plain_client_is_refused() {
    let broker = OwnBroker::start_tls_with_users("tls", &[(USER, PASSWORD)]);
    let services = common::services();
    let mut env = TestEnv::on_own_services(
        "kafka_tls",
        2,
        "",
        &broker.brokers(),
        &services.clickhouse_url,
        &services.clickhouse_credentials,
    );
    env.run_vigil(&["migrate"], Duration::from_secs(60));

    // Plain TCP to the TLS port, even with the right credentials: nothing.
    credentials_over(&mut env, "SASL_PLAINTEXT", PASSWORD);
    let (ok, _, output) = env.try_command(env.vigil(&["topics"]), Duration::from_secs(60));
    assert!(!ok, "a plain client was served over TLS:\n{output}");
    // TLS without trusting the local CA: the certificate is refused.
    credentials_over(&mut env, "SASL_SSL", PASSWORD);
    let (ok, _, output) = env.try_command(env.vigil(&["topics"]), Duration::from_secs(60));
    assert!(!ok, "an untrusted certificate was accepted:\n{output}");
    assert!(
        output.contains("certificate verify failed"),
        "the refusal says why: {output}"
    );
    // Trusting it, with the stages' credentials: the whole pipeline.
    env.set_override(
        "VIGIL_KAFKA__CLIENT_PROPERTIES__SSL_CA_LOCATION",
        broker.ca_file().to_str().unwrap(),
    );
    run_pipeline(&env);
}

fn run_pipeline(env: &TestEnv) {
    env.run_vigil(&["topics"], Duration::from_secs(60));
    env.run_vigil(
        &[
            "up",
            "--simulate",
            "--patients",
            "200",
            "--hospitals",
            "2",
            "--days",
            "150",
            "--seed",
            "9",
            "--until-idle",
            "3",
        ],
        Duration::from_secs(600),
    );
    let landed = env.scalar("SELECT count() FROM {db}.clinical_events");
    assert!(
        landed.parse::<u64>().unwrap() > 1_000,
        "{landed} events landed"
    );
    assert_ne!(env.scalar("SELECT count() FROM {db}.alerts"), "0");
    assert_ne!(env.scalar("SELECT count() FROM {db}.patient_status"), "0");
}
