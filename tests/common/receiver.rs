//! A hospital's side of the alert notifications for the tests: a plain HTTP/1.1 server on
//! loopback that checks each request's signature with the hospital's secret, answers as the
//! test tells it and records what it received.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use vigil_runtime::time::now_ms;

/// One request the receiver answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub hospital: String,
    pub idempotency_key: String,
    pub signature_valid: bool,
    pub status: u16,
    pub body: serde_json::Value,
    /// When it was answered.
    pub at: Instant,
}

#[derive(Default)]
struct ReceiverState {
    healthy: BTreeMap<String, bool>,
    /// How a hospital the test said nothing about answers.
    healthy_by_default: bool,
    /// Hospitals that refuse every request (404).
    refusing: Vec<String>,
    received: Vec<Received>,
}

/// A hospital side: a plain HTTP/1.1 server on loopback that checks each signature with the
/// hospital's secret and answers as the test tells it. Stops when dropped.
pub struct Receiver {
    pub port: u16,
    state: Arc<Mutex<ReceiverState>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    /// A receiver for the hospitals of `secrets`: those in `refusing` answer 404, the others
    /// 200 if healthy (`healthy_by_default` until the test says otherwise) and 503 if not.
    pub fn start(
        secrets: HashMap<String, Vec<u8>>,
        refusing: &[&str],
        healthy_by_default: bool,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("receiver binds");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(Mutex::new(ReceiverState {
            healthy_by_default,
            refusing: refusing.iter().map(|h| h.to_string()).collect(),
            ..ReceiverState::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let secrets = Arc::new(secrets);
        let (state_for_server, stop_for_server) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            // Bounded: the server ends with the test, or after ten minutes at most.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !stop_for_server.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (state, secrets, stop) = (
                            state_for_server.clone(),
                            secrets.clone(),
                            stop_for_server.clone(),
                        );
                        std::thread::spawn(move || serve(stream, &state, &secrets, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver { port, state, stop }
    }

    pub fn set_healthy(&self, hospital: &str, healthy: bool) {
        self.state
            .lock()
            .unwrap()
            .healthy
            .insert(hospital.to_string(), healthy);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn acknowledged(&self, hospital: &str) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|r| r.hospital == hospital && r.status == 200)
            .map(|r| r.idempotency_key)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serves the requests of one keep-alive connection.
fn serve(
    stream: TcpStream,
    state: &Mutex<ReceiverState>,
    secrets: &HashMap<String, Vec<u8>>,
    stop: &AtomicBool,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    while !stop.load(Ordering::Relaxed) {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        // POST /hospitals/<id>/alerts HTTP/1.1
        let path = request_line.split_whitespace().nth(1).unwrap_or_default();
        let hospital = path.split('/').nth(2).unwrap_or_default().to_string();
        let signature_valid = secrets.get(&hospital).is_some_and(|secret| {
            verify(
                secret,
                headers.get("x-vigil-signature").map(String::as_str),
                &body,
            )
        });
        let mut state = state.lock().unwrap();
        let default = state.healthy_by_default;
        let status = match hospital.as_str() {
            refused if state.refusing.iter().any(|h| h == refused) => 404,
            _ if !signature_valid => 401,
            _ if state.healthy.get(&hospital).copied().unwrap_or(default) => 200,
            _ => 503,
        };
        state.received.push(Received {
            hospital,
            idempotency_key: headers.get("idempotency-key").cloned().unwrap_or_default(),
            signature_valid,
            status,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            at: Instant::now(),
        });
        drop(state);
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            401 => "Unauthorized",
            _ => "Service Unavailable",
        };
        let response = format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n\r\n");
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// What a hospital does with `X-Vigil-Signature: t=<unix>,v1=<hex>`.
pub fn verify(secret: &[u8], header: Option<&str>, body: &[u8]) -> bool {
    let Some(header) = header else { return false };
    let fields: HashMap<&str, &str> = header
        .split(',')
        .filter_map(|part| part.split_once('='))
        .collect();
    let (Some(t), Some(v1)) = (fields.get("t"), fields.get("v1")) else {
        return false;
    };
    let fresh = t
        .parse::<i64>()
        .is_ok_and(|t| (now_ms() / 1000 - t).abs() < 300);
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    fresh && hex::decode(v1).is_ok_and(|expected| mac.verify_slice(&expected).is_ok())
}
