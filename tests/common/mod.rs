//! Shared helpers for the end-to-end tests: they run against the real broker and the real
//! ClickHouse started by `deploy/local/test.sh` (or `deploy/local/services.sh start`), found
//! through VIGIL_TEST_KAFKA_BROKERS and VIGIL_TEST_CLICKHOUSE_URL. Every test gets its own topics
//! and its own database, and every process it starts is killed when the test ends.

#![allow(dead_code)]
// Test helpers: a panic is how they report a broken environment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod receiver;
pub mod webdriver;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::DurableProducer;
use vigil_schemas::{AvroCodec, ClinicalEvent, Operation, Payload, VitalSign, WireRecord};

const HOW_TO_START: &str = "start the local services first: `deploy/local/test.sh` runs the whole suite with them, \
or `deploy/local/services.sh start && eval \"$(deploy/local/services.sh env)\"` before `cargo nextest run`";

/// Addresses of the real services.
#[derive(Clone)]
pub struct Services {
    pub brokers: String,
    pub clickhouse_url: String,
    /// The ClickHouse users' passwords (`VIGIL_CH_<ROLE>_PASSWORD` lines) services.sh generated.
    pub clickhouse_credentials: PathBuf,
}

impl Services {
    /// A password from the credentials file, e.g. `password("ADMIN")`.
    pub fn password(&self, role: &str) -> String {
        let text = std::fs::read_to_string(&self.clickhouse_credentials).unwrap_or_else(|e| {
            panic!("cannot read {}: {e}", self.clickhouse_credentials.display())
        });
        let name = format!("VIGIL_CH_{role}_PASSWORD=");
        text.lines()
            .find_map(|line| line.strip_prefix(&name))
            .unwrap_or_else(|| panic!("no {name} in {}", self.clickhouse_credentials.display()))
            .to_string()
    }

    /// A client as the administrator (`default`, with its password).
    pub fn admin_client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.clickhouse_url)
            .with_user("default")
            .with_password(self.password("ADMIN"))
            .with_validation(false)
    }
}

/// Where services.sh keeps the ClickHouse passwords of the shared test server.
fn shared_credentials() -> PathBuf {
    std::env::var("VIGIL_TEST_CLICKHOUSE_CREDENTIALS")
        .unwrap_or_else(|_| panic!("VIGIL_TEST_CLICKHOUSE_CREDENTIALS is not set: {HOW_TO_START}"))
        .into()
}

fn reachable(host_port: &str) -> bool {
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
}

/// The services, or a failure that says how to start them (never a silent pass).
pub fn services() -> Services {
    let brokers = std::env::var("VIGIL_TEST_KAFKA_BROKERS")
        .unwrap_or_else(|_| panic!("VIGIL_TEST_KAFKA_BROKERS is not set: {HOW_TO_START}"));
    let clickhouse_url = std::env::var("VIGIL_TEST_CLICKHOUSE_URL")
        .unwrap_or_else(|_| panic!("VIGIL_TEST_CLICKHOUSE_URL is not set: {HOW_TO_START}"));
    let first_broker = brokers.split(',').next().unwrap_or_default().to_string();
    assert!(
        reachable(&first_broker),
        "no Kafka broker answers at {first_broker}: {HOW_TO_START}"
    );
    let ch_host = clickhouse_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    assert!(
        reachable(&ch_host),
        "no ClickHouse answers at {clickhouse_url}: {HOW_TO_START}"
    );
    Services {
        brokers,
        clickhouse_url,
        clickhouse_credentials: shared_credentials(),
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// One test's world: topics with a suffix, a database, a config file, a scratch directory.
/// `sibling` adds a second pipeline over the same input topics (a reference run beside a chaos
/// run) with outputs, state, consumer groups and database of its own.
pub struct TestEnv {
    pub services: Services,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub database: String,
    pub kafka: KafkaConfig,
    pub runtime: tokio::runtime::Runtime,
    id: String,
    extra: String,
    databases: Vec<String>,
    keep: bool,
    /// Settings every `vigil` this env starts gets from its environment (batch sizes,
    /// checkpoint intervals: what must never change an output).
    overrides: Vec<(String, String)>,
}

/// A fixed pseudonymisation key, so separate runs of one test agree on pseudonyms.
pub const TEST_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn write_config(
    path: &Path,
    services: &Services,
    kafka: &KafkaConfig,
    database: &str,
    groups: &str,
    key_file: &Path,
    extra: &str,
) {
    let topics = &kafka.topics;
    let config = format!(
        r#"[kafka]
brokers = "{brokers}"
partitions = {partitions}
delivery_timeout = "20s"
session_timeout = "6s"

[kafka.topics]
his_changes = "{his}"
clinical_events = "{events}"
alerts = "{alerts}"
patient_status = "{status}"
alert_acks = "{acks}"
dead_letters = "{dlq}"
late_events = "{late}"
processor_state = "{state}"
alert_deliveries = "{deliveries}"
pipeline_stats = "{stats}"

[clickhouse]
url = "{ch}"
database = "{database}"

[edge]
pseudonym_key_file = "{key}"
catalog_dir = "{catalog}"

[ingest]
group_id = "ingest-{groups}"

[process]
group_id = "process-{groups}"
checkpoint_interval = "500ms"
idle_partition_timeout = "0s"

[telemetry]
metrics_listen = ""

[serve]
listen = "127.0.0.1:0"

[sink]
group_id = "sink-{groups}"
flush_interval = "300ms"
alerts_flush_interval = "100ms"
{extra}
"#,
        brokers = services.brokers,
        partitions = kafka.partitions,
        his = topics.his_changes,
        events = topics.clinical_events,
        alerts = topics.alerts,
        status = topics.patient_status,
        acks = topics.alert_acks,
        dlq = topics.dead_letters,
        late = topics.late_events,
        state = topics.processor_state,
        deliveries = topics.alert_deliveries,
        stats = topics.pipeline_stats,
        ch = services.clickhouse_url,
        key = key_file.display(),
        catalog = repo_path("deploy/edge").display(),
    );
    std::fs::write(path, config).expect("config written");
}

impl TestEnv {
    /// `extra` is TOML appended to the generated configuration (sections not already present).
    pub fn new(name: &str, partitions: i32, extra: &str) -> TestEnv {
        let id = unique(name);
        let database = format!("vigil_t_{id}");
        TestEnv::build(id, database, partitions, extra)
    }

    /// Like `new`, with a fixed database name (dropped first if an earlier run left it), for
    /// tests of what ClickHouse users may do: users.xml names the databases they may use.
    pub fn with_database(name: &str, database: &str, partitions: i32, extra: &str) -> TestEnv {
        let env = TestEnv::build(unique(name), database.to_string(), partitions, extra);
        for db in [
            database.to_string(),
            format!("{database}_insurance"),
            format!("{database}_audit"),
        ] {
            env.admin(&format!("DROP DATABASE IF EXISTS {db}"));
        }
        env
    }

    /// Like `new`, against a broker and a ClickHouse server of the test's own (which it may
    /// crash, stop and start).
    pub fn on_own_services(
        name: &str,
        partitions: i32,
        extra: &str,
        brokers: &str,
        clickhouse_url: &str,
        clickhouse_credentials: &Path,
    ) -> TestEnv {
        let id = unique(name);
        let database = format!("vigil_t_{id}");
        let services = Services {
            brokers: brokers.to_string(),
            clickhouse_url: clickhouse_url.to_string(),
            clickhouse_credentials: clickhouse_credentials.to_path_buf(),
        };
        TestEnv::build_on(services, id, database, partitions, extra)
    }

    /// Like `new`, against a ClickHouse server of the test's own (one it may stop and start).
    pub fn on_clickhouse(
        name: &str,
        partitions: i32,
        extra: &str,
        server: &OwnClickHouse,
    ) -> TestEnv {
        let id = unique(name);
        let database = format!("vigil_t_{id}");
        let services = Services {
            clickhouse_url: server.url(),
            clickhouse_credentials: server.credentials_file(),
            ..services()
        };
        TestEnv::build_on(services, id, database, partitions, extra)
    }

    /// Like `on_clickhouse`, with a database of a name the server's users were made for.
    pub fn on_clickhouse_database(
        name: &str,
        database: &str,
        partitions: i32,
        server: &OwnClickHouse,
    ) -> TestEnv {
        let services = Services {
            clickhouse_url: server.url(),
            clickhouse_credentials: server.credentials_file(),
            ..services()
        };
        TestEnv::build_on(services, unique(name), database.to_string(), partitions, "")
    }

    fn build(id: String, database: String, partitions: i32, extra: &str) -> TestEnv {
        TestEnv::build_on(services(), id, database, partitions, extra)
    }

    fn build_on(
        services: Services,
        id: String,
        database: String,
        partitions: i32,
        extra: &str,
    ) -> TestEnv {
        let dir = std::env::temp_dir().join(format!("vigil-test-{id}"));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(dir.join("pseudonym.key"), TEST_KEY).expect("key written");
        let mut kafka = KafkaConfig {
            brokers: services.brokers.clone(),
            partitions,
            ..KafkaConfig::default()
        };
        kafka.topics = kafka.topics.with_suffix(&id);
        let config_path = dir.join("vigil.toml");
        write_config(
            &config_path,
            &services,
            &kafka,
            &database,
            &id,
            &dir.join("pseudonym.key"),
            extra,
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        TestEnv {
            services,
            dir,
            config_path,
            database: database.clone(),
            kafka,
            runtime,
            id,
            extra: extra.to_string(),
            databases: vec![database],
            keep: false,
            overrides: Vec::new(),
        }
    }

    /// A second pipeline reading this one's input topics, writing everywhere else on its own.
    pub fn sibling(&mut self, name: &str) -> TestEnv {
        self.sibling_from(name, false)
    }

    /// A second whole pipeline over this one's change events: its edge writes canonical events
    /// of its own too.
    pub fn sibling_with_own_edge(&mut self, name: &str) -> TestEnv {
        self.sibling_from(name, true)
    }

    fn sibling_from(&mut self, name: &str, own_edge: bool) -> TestEnv {
        let id = format!("{}_{name}", self.id);
        let database = format!("vigil_t_{id}");
        let mut kafka = self.kafka.clone();
        let own = KafkaConfig::default().topics.with_suffix(&id);
        if own_edge {
            kafka.topics.clinical_events = own.clinical_events;
        }
        kafka.topics.alerts = own.alerts;
        kafka.topics.patient_status = own.patient_status;
        kafka.topics.dead_letters = own.dead_letters;
        kafka.topics.late_events = own.late_events;
        kafka.topics.processor_state = own.processor_state;
        kafka.topics.alert_deliveries = own.alert_deliveries;
        kafka.topics.pipeline_stats = own.pipeline_stats;
        let config_path = self.dir.join(format!("vigil-{name}.toml"));
        write_config(
            &config_path,
            &self.services,
            &kafka,
            &database,
            &id,
            &self.dir.join("pseudonym.key"),
            &self.extra,
        );
        self.databases.push(database.clone());
        TestEnv {
            services: self.services.clone(),
            dir: self.dir.clone(),
            config_path,
            database,
            kafka,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            id,
            extra: self.extra.clone(),
            databases: Vec::new(),
            keep: true, // the parent cleans up
            overrides: Vec::new(),
        }
    }

    /// A `vigil` command using this test's configuration.
    pub fn vigil(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
        command
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(&self.dir)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| {
                    "warn,vigil_processors=info,vigil_producers=info,vigil_sinks=info,vigil_runtime=info".into()
                }),
            )
            // The configuration file names this test's services; the shell's may name others.
            .env("VIGIL_CLICKHOUSE__URL", &self.services.clickhouse_url)
            .env(
                "VIGIL_CLICKHOUSE__CREDENTIALS_FILE",
                &self.services.clickhouse_credentials,
            )
            .env_remove("VIGIL_CH_ADMIN_PASSWORD")
            .env_remove("VIGIL_CH_WRITER_PASSWORD")
            .env_remove("VIGIL_CH_READER_PASSWORD")
            .env("VIGIL_KAFKA__BROKERS", &self.services.brokers)
            .env_remove("VIGIL_PSEUDONYM_KEY")
            .envs(self.overrides.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Dead letters one stage landed, counted per reason code.
    pub fn dead_letters_by_reason(&self, stage: &str) -> std::collections::BTreeMap<String, u64> {
        self.query(&format!(
            "SELECT reason_code, uniqExact(dead_letter_id) FROM {{db}}.dead_letters \
             WHERE stage = '{stage}' GROUP BY reason_code"
        ))
        .iter()
        .map(|l| {
            let (reason, n) = l.split_once('\t').expect("two columns");
            (reason.to_string(), n.parse().expect("a count"))
        })
        .collect()
    }

    /// Sets a `VIGIL_...` environment override for every `vigil` this env starts from now on.
    pub fn set_override(&mut self, key: &str, value: &str) {
        self.overrides.push((key.to_string(), value.to_string()));
    }

    /// Runs `vigil` to completion within `limit`, and fails the test with its output otherwise.
    pub fn run_vigil(&self, args: &[&str], limit: Duration) -> String {
        self.run_command(self.vigil(args), limit)
    }

    /// A new API token with `role` (`vigil token add`), as its holder gets it.
    pub fn mint_token(&self, role: &str) -> String {
        let output = self.run_vigil(
            &["token", "add", "--role", role, "--name", "test", "--quiet"],
            Duration::from_secs(60),
        );
        output
            .lines()
            .find(|l| l.starts_with("vgl_"))
            .unwrap_or_else(|| panic!("no token printed:\n{output}"))
            .to_string()
    }

    /// Runs a prepared `vigil` command (extra environment, say) like `run_vigil`. Output goes
    /// through a file, not a pipe: a chatty run cannot block on a full pipe nobody reads.
    pub fn run_command(&self, command: Command, limit: Duration) -> String {
        let (success, args, text) = self.try_command(command, limit);
        assert!(success, "vigil {args:?} failed:\n{text}");
        text
    }

    /// Runs a prepared `vigil` command to its end within `limit`: whether it succeeded, its
    /// arguments and its output.
    pub fn try_command(
        &self,
        mut command: Command,
        limit: Duration,
    ) -> (bool, Vec<String>, String) {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let log = self
            .dir
            .join(format!("run-{}.log", RUNS.fetch_add(1, Ordering::SeqCst)));
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("vigil starts");
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut guard = ChildGuard(Some(child));
        let started = Instant::now();
        loop {
            let child = guard.0.as_mut().expect("child");
            if let Some(status) = child.try_wait().expect("wait") {
                guard.0 = None;
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return (status.success(), args, text);
            }
            assert!(
                started.elapsed() < limit,
                "vigil {args:?} did not finish within {limit:?}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `vigil` in the background with its output in `log` (in the scratch directory); it
    /// is killed when the guard drops.
    pub fn spawn_vigil(&self, args: &[&str], log: &str) -> ChildGuard {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(log))
            .expect("log file");
        let err = file.try_clone().expect("log file");
        let child = self
            .vigil(args)
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("vigil starts");
        ChildGuard(Some(child))
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Produces records (keyed by `key`) and waits until the broker acknowledged them all.
    pub fn produce<T: WireRecord>(&self, topic: &str, records: &[(String, T)]) {
        let producer = DurableProducer::new(&self.kafka, "vigil-test").expect("producer");
        let codec = AvroCodec::<T>::new().expect("codec");
        for (key, record) in records {
            producer
                .send(
                    topic,
                    key.as_bytes(),
                    &codec.encode(record).expect("encodes"),
                )
                .expect("sent");
        }
        producer.flush().expect("acknowledged");
    }

    /// A client as the administrator, on this test's database.
    pub fn clickhouse(&self) -> clickhouse::Client {
        self.services.admin_client().with_database(&self.database)
    }

    /// Runs a query and returns its rows as tab-separated text (one line per row).
    pub fn query(&self, sql: &str) -> Vec<String> {
        let sql = sql.replace("{db}", &self.database);
        let client = self.clickhouse();
        self.runtime.block_on(async move {
            let mut cursor = client
                .query(&sql)
                .fetch_bytes("TabSeparated")
                .expect("query starts");
            let bytes = cursor
                .collect()
                .await
                .unwrap_or_else(|e| panic!("query failed: {sql}: {e}"));
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_string)
                .collect()
        })
    }

    /// A string value from this environment's config file, e.g. ("process", "group_id").
    pub fn scalar_config(&self, section: &str, key: &str) -> String {
        let text = std::fs::read_to_string(&self.config_path).expect("config readable");
        let value: toml::Value = toml::from_str(&text).expect("config parses");
        value[section][key]
            .as_str()
            .expect("a string setting")
            .to_string()
    }

    /// Runs a statement as the administrator (`default`), failing the test if it fails.
    pub fn admin(&self, sql: &str) {
        let client = self.services.admin_client();
        let sql = sql.to_string();
        self.runtime
            .block_on(async move { client.query(&sql).execute().await })
            .unwrap_or_else(|e| panic!("admin statement failed: {e}"));
    }

    /// Runs a query as `user`: its tab-separated rows, or ClickHouse's refusal.
    pub fn query_as(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        self.query_as_with(user, password, sql, &[])
    }

    /// Like `query_as`, sending `settings` with the request (as URL parameters, the way any
    /// HTTP client may).
    pub fn query_as_with(
        &self,
        user: &str,
        password: &str,
        sql: &str,
        settings: &[(&str, &str)],
    ) -> Result<String, String> {
        let sql = sql.replace("{db}", &self.database);
        let mut client = clickhouse::Client::default()
            .with_url(&self.services.clickhouse_url)
            .with_user(user)
            .with_password(password)
            .with_validation(false);
        for (name, value) in settings {
            client = client.with_setting(*name, *value);
        }
        self.runtime.block_on(async move {
            let mut cursor = client
                .query(&sql)
                .fetch_bytes("TabSeparated")
                .map_err(|e| e.to_string())?;
            let bytes = cursor.collect().await.map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&bytes).trim_end().to_string())
        })
    }

    pub fn scalar(&self, sql: &str) -> String {
        self.query(sql).into_iter().next().unwrap_or_default()
    }

    /// Keeps the scratch directory and database after the test (for debugging a failure).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.keep || std::thread::panicking() {
            eprintln!(
                "kept test files in {} and database {}",
                self.dir.display(),
                self.database
            );
            return;
        }
        for db in [
            self.database.clone(),
            format!("{}_insurance", self.database),
            format!("{}_audit", self.database),
        ] {
            let client = self.services.admin_client();
            let sql = format!("DROP DATABASE IF EXISTS {db}");
            let _ = self
                .runtime
                .block_on(async move { client.query(&sql).execute().await });
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills the process when dropped, so no test leaves anything running.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL: no shutdown path runs.
    pub fn sigkill(&mut self) {
        self.kill();
    }

    /// SIGTERM, as a supervisor stops an instance it replaces; whether it exited cleanly
    /// within `limit` (it is killed otherwise).
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let Some(child) = self.0.as_ref() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let clean = self.wait_with_limit(limit);
        self.kill();
        clean
    }

    pub fn wait_with_limit(&mut self, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            match self.0.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => {
                    self.0 = None;
                    return status.success();
                }
                None => return true,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        false
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Messages of `topic` that `group` has not committed yet, summed over partitions.
pub fn group_lag(kafka: &KafkaConfig, group: &str, topic: &str) -> i64 {
    vigil_runtime::kafka::group_lag(kafka, group, topic)
        .expect("group lag")
        .iter()
        .map(|p| p.lag())
        .sum()
}

/// Every record value of every partition of `topic` (tombstones as empty).
pub fn read_topic(kafka: &KafkaConfig, topic: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for partition in 0..kafka.partitions {
        let reader =
            vigil_runtime::kafka::RangeReader::new(kafka, "vigil-test-scan", topic, partition)
                .expect("reader");
        let (low, high) = reader.watermarks().expect("watermarks");
        reader
            .read::<vigil_runtime::RuntimeError>(
                low,
                high,
                Duration::from_secs(60),
                |_, payload| {
                    out.push(payload.unwrap_or_default().to_vec());
                    Ok(())
                },
            )
            .expect("topic read");
    }
    out
}

/// A free loopback port (free now; good enough for a test's own server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A ClickHouse server of one test's own, started by `deploy/local/services.sh` on free ports
/// with throwaway data, so the test may stop and restart it without disturbing the others.
/// Stopped and deleted when dropped.
pub struct OwnClickHouse {
    home: PathBuf,
    http_port: u16,
    tcp_port: u16,
    interserver_port: u16,
    /// Also serving HTTPS here, with a certificate of a local CA.
    https_port: Option<u16>,
    /// The Vigil databases its users are made for (`VIGIL_CH_DATABASES`).
    databases: String,
    /// Its place in a replicated cluster, if it is a replica.
    replica: Option<Replica>,
}

/// A replica's place in a one-shard cluster.
#[derive(Clone)]
struct Replica {
    cluster: String,
    name: String,
    /// Every replica's native address, "host:port ...".
    hosts: String,
    zookeeper_port: u16,
}

impl OwnClickHouse {
    /// `count` ClickHouse servers, replicas of one shard of cluster `cluster` sharing `zookeeper`,
    /// with the same users and passwords, their users allowed every database.
    pub fn replicas(
        name: &str,
        cluster: &str,
        count: usize,
        zookeeper: &OwnZooKeeper,
    ) -> Vec<OwnClickHouse> {
        let mut servers: Vec<OwnClickHouse> = (0..count)
            .map(|i| OwnClickHouse {
                home: std::env::temp_dir()
                    .join(format!("vigil-ch-{}", unique(&format!("{name}{i}")))),
                http_port: free_port(),
                tcp_port: free_port(),
                interserver_port: free_port(),
                https_port: None,
                databases: "*".to_string(),
                replica: None,
            })
            .collect();
        let hosts = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.tcp_port))
            .collect::<Vec<_>>()
            .join(" ");
        for (i, server) in servers.iter_mut().enumerate() {
            server.replica = Some(Replica {
                cluster: cluster.to_string(),
                name: format!("r{}", i + 1),
                hosts: hosts.clone(),
                zookeeper_port: zookeeper.port,
            });
        }
        servers[0].start_again();
        for server in &servers[1..] {
            std::fs::create_dir_all(server.home.join("clickhouse")).expect("server home");
            std::fs::copy(servers[0].credentials_file(), server.credentials_file())
                .expect("the same users on every replica");
            server.start_again();
        }
        servers
    }

    /// Kills the server with SIGKILL (a crashed host): nothing is flushed or closed.
    pub fn crash(&self) {
        let pidfile = self.home.join("clickhouse.pid");
        let pid = std::fs::read_to_string(&pidfile).expect("the server runs");
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "the server could not be killed");
        let _ = std::fs::remove_file(pidfile);
        let address = format!("127.0.0.1:{}", self.http_port);
        assert!(
            eventually(Duration::from_secs(10), || !reachable(&address)),
            "the killed server still answers"
        );
    }

    /// A server whose users may use every database (the tests make their own).
    pub fn start(name: &str) -> OwnClickHouse {
        OwnClickHouse::start_with(name, None, "*")
    }

    /// A server whose users are made for `database` (and its companions) only.
    pub fn serving(name: &str, database: &str) -> OwnClickHouse {
        OwnClickHouse::start_with(name, None, database)
    }

    /// A server that also serves HTTPS, its users made for `database`.
    pub fn start_https(name: &str, database: &str) -> OwnClickHouse {
        OwnClickHouse::start_with(name, Some(free_port()), database)
    }

    fn start_with(name: &str, https_port: Option<u16>, databases: &str) -> OwnClickHouse {
        let server = OwnClickHouse {
            home: std::env::temp_dir().join(format!("vigil-ch-{}", unique(name))),
            http_port: free_port(),
            tcp_port: free_port(),
            interserver_port: free_port(),
            https_port,
            databases: databases.to_string(),
            replica: None,
        };
        server.start_again();
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn https_url(&self) -> Option<String> {
        self.https_port
            .map(|port| format!("https://127.0.0.1:{port}"))
    }

    /// The local CA that signed the HTTPS certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.home.join("clickhouse/tls/ca.crt")
    }

    /// The file of the users' passwords services.sh generated.
    pub fn credentials_file(&self) -> PathBuf {
        self.home.join("clickhouse/credentials.env")
    }

    /// The users' passwords services.sh generated (`VIGIL_CH_WRITER_PASSWORD`, ...).
    pub fn credentials(&self) -> std::collections::HashMap<String, String> {
        std::fs::read_to_string(self.credentials_file())
            .expect("credentials written")
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn script(&self, action: &str) {
        std::fs::create_dir_all(&self.home).expect("server home");
        let log = std::fs::File::create(self.home.join(format!("services-{action}.log")))
            .expect("log file");
        let status = Command::new(repo_path("deploy/local/services.sh"))
            .args([action, "clickhouse"])
            .env("VIGIL_HOME", &self.home)
            .env("VIGIL_CLICKHOUSE_HTTP_PORT", self.http_port.to_string())
            .env("VIGIL_CLICKHOUSE_TCP_PORT", self.tcp_port.to_string())
            .env(
                "VIGIL_CLICKHOUSE_INTERSERVER_PORT",
                self.interserver_port.to_string(),
            )
            .env(
                "VIGIL_CLICKHOUSE_HTTPS_PORT",
                self.https_port.map(|p| p.to_string()).unwrap_or_default(),
            )
            .env("VIGIL_CH_DATABASES", &self.databases)
            .envs(self.replica.iter().flat_map(|replica| {
                [
                    ("VIGIL_CLICKHOUSE_CLUSTER", replica.cluster.clone()),
                    ("VIGIL_CLICKHOUSE_REPLICA", replica.name.clone()),
                    ("VIGIL_CLICKHOUSE_CLUSTER_HOSTS", replica.hosts.clone()),
                    ("VIGIL_ZOOKEEPER_PORT", replica.zookeeper_port.to_string()),
                ]
            }))
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .status()
            .expect("services.sh runs");
        let output = std::fs::read_to_string(self.home.join(format!("services-{action}.log")))
            .unwrap_or_default();
        assert!(
            status.success(),
            "services.sh {action} clickhouse failed:\n{output}"
        );
    }

    /// Starts the server (again); returns once it answers.
    pub fn start_again(&self) {
        self.script("start");
    }

    /// Stops the server (SIGTERM, as an operator or a host shutdown would).
    pub fn stop(&self) {
        self.script("stop");
    }
}

impl Drop for OwnClickHouse {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stop()));
        if std::thread::panicking() {
            // The server's logs say what it did when the test failed.
            eprintln!("kept ClickHouse files and logs in {}", self.home.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.home);
        }
    }
}

/// A ZooKeeper of one test's own (for a replicated ClickHouse cluster), started by
/// `deploy/local/services.sh start zookeeper` on a free port; stopped and deleted when dropped.
pub struct OwnZooKeeper {
    home: PathBuf,
    pub port: u16,
}

impl OwnZooKeeper {
    pub fn start(name: &str) -> OwnZooKeeper {
        let zookeeper = OwnZooKeeper {
            home: std::env::temp_dir().join(format!("vigil-zk-{}", unique(name))),
            port: free_port(),
        };
        zookeeper.script("start");
        zookeeper
    }

    pub fn start_again(&self) {
        self.script("start");
    }

    pub fn stop(&self) {
        self.script("stop");
    }

    fn script(&self, action: &str) {
        std::fs::create_dir_all(&self.home).expect("zookeeper home");
        let output = Command::new(repo_path("deploy/local/services.sh"))
            .args([action, "zookeeper"])
            .env("VIGIL_HOME", &self.home)
            .env("VIGIL_ZOOKEEPER_PORT", self.port.to_string())
            .output()
            .expect("services.sh runs");
        assert!(
            output.status.success(),
            "services.sh {action} zookeeper failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for OwnZooKeeper {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.script("stop")));
        if std::thread::panicking() {
            eprintln!("kept ZooKeeper files and logs in {}", self.home.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.home);
        }
    }
}

/// A Kafka-API broker (Tansu) of one test's own, started by `deploy/local/services.sh` on a free
/// port with throwaway data, so the test may crash and restart it without disturbing the others.
/// Stopped and deleted when dropped.
pub struct OwnBroker {
    home: PathBuf,
    port: u16,
    /// Whether clients must authenticate (SASL SCRAM).
    authentication: bool,
    /// Served over TLS on this port (a TLS terminator in front of Tansu), if any.
    tls_port: Option<u16>,
}

impl OwnBroker {
    pub fn start(name: &str) -> OwnBroker {
        let broker = OwnBroker {
            home: std::env::temp_dir().join(format!("vigil-broker-{}", unique(name))),
            port: free_port(),
            authentication: false,
            tls_port: None,
        };
        broker.start_again();
        broker
    }

    /// Like `start_with_users`, reachable over TLS only (with a certificate of a local CA).
    pub fn start_tls_with_users(name: &str, users: &[(&str, &str)]) -> OwnBroker {
        let mut broker = OwnBroker::start_with_users(name, users);
        broker.script("stop");
        broker.tls_port = Some(free_port());
        broker.start_again();
        broker
    }

    /// The CA that signed the TLS certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.home.join("kafka-tls/ca.crt")
    }

    /// A broker that requires every client to authenticate as one of `users` (name, password;
    /// SCRAM-SHA-512): the users are added first, then it restarts requiring them.
    pub fn start_with_users(name: &str, users: &[(&str, &str)]) -> OwnBroker {
        let mut broker = OwnBroker::start(name);
        for (user, password) in users {
            broker.script_with(&["user", user, password]);
        }
        broker.script("stop");
        broker.authentication = true;
        broker.start_again();
        broker
    }

    /// Where clients bootstrap: the TLS port if it has one.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.tls_port.unwrap_or(self.port))
    }

    fn script(&self, action: &str) {
        self.script_with(&[action, "tansu"]);
    }

    fn script_with(&self, args: &[&str]) {
        let action = args[0];
        std::fs::create_dir_all(&self.home).expect("broker home");
        let log_path = self.home.join(format!("services-{action}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let status = Command::new(repo_path("deploy/local/services.sh"))
            .args(args)
            .env("VIGIL_HOME", &self.home)
            .env("VIGIL_KAFKA_PORT", self.port.to_string())
            .env(
                "VIGIL_KAFKA_AUTHENTICATION",
                if self.authentication { "1" } else { "0" },
            )
            .env(
                "VIGIL_KAFKA_TLS_PORT",
                self.tls_port.map(|p| p.to_string()).unwrap_or_default(),
            )
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .status()
            .expect("services.sh runs");
        assert!(
            status.success(),
            "services.sh {action} tansu failed:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// Starts the broker (again, on its data); returns once it listens.
    pub fn start_again(&self) {
        self.script("start");
    }

    /// Kills the broker with SIGKILL, as a crash would: nothing is flushed or closed.
    pub fn crash(&self) {
        let pidfile = self.home.join("tansu.pid");
        let pid = std::fs::read_to_string(&pidfile).expect("the broker runs");
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "the broker could not be killed");
        let _ = std::fs::remove_file(pidfile);
        assert!(
            eventually(Duration::from_secs(10), || !reachable(&self.brokers())),
            "the killed broker still answers"
        );
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.script("stop")));
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// The dashboard's rollup (kept by the writer, recomputed per period) says what the metric view
/// over every status row says, figure for figure.
pub fn assert_rollup_is_current(env: &TestEnv) {
    let figures = |view: &str| {
        env.query(&format!(
            "SELECT definition, hospital_id, condition, period_kind, toString(period_start), \
             managed_patients, standardised_patients, controlled_patients, new_complications, \
             patient_years, standardised_rate, control_rate, complications_per_1000_patient_years \
             FROM {{db}}.{view} \
             ORDER BY definition, hospital_id, condition, period_kind, period_start"
        ))
    };
    let metrics = figures("pilot_metrics");
    assert!(!metrics.is_empty(), "the run produced figures");
    assert_same(
        "the rollup against the metric view",
        &metrics,
        &figures("pilot_rollup"),
    );
    assert_activity_rollups_are_current(env);
}

/// The dashboard's alerts and data-quality rollups (kept by the writer, recomputed per day or
/// month) say what the raw tables say: events and late events per hospital, alert episodes per
/// rule with those open and acknowledged, notification outcomes, refusals.
pub fn assert_activity_rollups_are_current(env: &TestEnv) {
    let pairs = [
        (
            "events per hospital",
            "SELECT hospital_id, uniqExact(event_id) FROM {db}.clinical_events \
             GROUP BY hospital_id ORDER BY hospital_id",
            "SELECT hospital_id, sum(events) AS n FROM {db}.event_rollup FINAL \
             GROUP BY hospital_id HAVING n > 0 ORDER BY hospital_id",
        ),
        (
            "late events per hospital",
            "SELECT hospital_id, uniqExact(event_id) FROM {db}.late_events \
             GROUP BY hospital_id ORDER BY hospital_id",
            "SELECT hospital_id, sum(late) AS n FROM {db}.event_rollup FINAL \
             GROUP BY hospital_id HAVING n > 0 ORDER BY hospital_id",
        ),
        (
            "alert episodes per rule: raised, open, acknowledged",
            "SELECT rule_id, count(), countIf(last != 'RESOLVED'), countIf(acked > 0) FROM \
             (SELECT episode_id, any(rule_id) AS rule_id, argMax(status, sequence) AS last, \
              minIf(event_time_ms, status = 'RAISED') AS raised, \
              minIf(event_time_ms, status = 'ACKNOWLEDGED') AS acked \
              FROM {db}.alerts FINAL GROUP BY episode_id HAVING raised > 0) \
             GROUP BY rule_id ORDER BY rule_id",
            "SELECT rule_id, sum(raised), sum(open), sum(acknowledged) \
             FROM {db}.alert_rollup_latest GROUP BY rule_id ORDER BY rule_id",
        ),
        (
            "notification outcomes",
            "SELECT outcome, uniqExact(alert_id) FROM {db}.alert_deliveries FINAL \
             GROUP BY outcome ORDER BY outcome",
            "SELECT outcome, sum(alerts) FROM {db}.delivery_rollup_latest \
             GROUP BY outcome ORDER BY outcome",
        ),
        (
            "refusals per hospital, stage and reason",
            "SELECT hospital_id, stage, reason_code, uniqExact(dead_letter_id) \
             FROM {db}.dead_letters GROUP BY hospital_id, stage, reason_code \
             ORDER BY hospital_id, stage, reason_code",
            "SELECT hospital_id, stage, reason_code, sum(records) \
             FROM {db}.dead_letter_rollup_latest GROUP BY hospital_id, stage, reason_code \
             ORDER BY hospital_id, stage, reason_code",
        ),
    ];
    for (what, raw, rollup) in pairs {
        assert_same(
            &format!("the rollup against the raw rows: {what}"),
            &env.query(raw),
            &env.query(rollup),
        );
    }
}

/// Fails with the first differences between two sorted row lists (not two pages of rows).
pub fn assert_same(what: &str, expected: &[String], actual: &[String]) {
    if expected == actual {
        return;
    }
    let e: std::collections::BTreeSet<&String> = expected.iter().collect();
    let a: std::collections::BTreeSet<&String> = actual.iter().collect();
    let missing: Vec<&&String> = e.difference(&a).take(5).collect();
    let extra: Vec<&&String> = a.difference(&e).take(5).collect();
    panic!(
        "{what}: {} rows expected, {} found.\nmissing (first 5): {missing:#?}\nunexpected (first 5): {extra:#?}",
        expected.len(),
        actual.len()
    );
}

/// A canonical event of `patient` at H0001, as the edge would produce it, keyed for the topic.
pub fn canonical(
    patient: &str,
    record: &str,
    time_ms: i64,
    payload: Payload,
) -> (String, ClinicalEvent) {
    let event = ClinicalEvent {
        event_id: format!("event-{record}"),
        hospital_id: "H0001".into(),
        source_system: "e2e-test".into(),
        operation: Operation::Create,
        event_time_ms: time_ms,
        ingest_time_ms: time_ms,
        patient_pseudonym: patient.to_string(),
        record_id: record.to_string(),
        schema_version: 1,
        payload,
        source: None,
    };
    (patient.to_string(), event)
}

/// A blood-pressure reading as a canonical event.
pub fn vital_signs(
    patient: &str,
    record: &str,
    time_ms: i64,
    systolic: f64,
    diastolic: f64,
) -> (String, ClinicalEvent) {
    let reading = Payload::VitalSign(VitalSign {
        systolic_mmhg: Some(systolic),
        diastolic_mmhg: Some(diastolic),
        ..VitalSign::default()
    });
    canonical(patient, record, time_ms, reading)
}

/// `GET path` with `token` as the bearer (none when empty): status and body.
pub fn get(port: u16, token: &str, path: &str) -> (u16, String) {
    request(port, token, "GET", path, "")
}

/// One HTTP/1.1 request: status and body.
pub fn request(port: u16, token: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let bearer = if token.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {token}\r\n")
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{bearer}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap();
    (status, body)
}
