//! Just enough of the W3C WebDriver protocol to drive Debian's headless Chromium through its
//! `chromedriver`: open a page, run a script, take a screenshot. Plain HTTP on loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::{free_port, ChildGuard};

/// A browser session; the browser and its driver stop when it drops.
pub struct Browser {
    port: u16,
    session: String,
    _driver: ChildGuard,
}

fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("chromedriver answers");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver keeps connections open whatever the request says: read by Content-Length.
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    let body = loop {
        let read = stream
            .read(&mut chunk)
            .expect("chromedriver answers in time");
        assert!(read > 0, "chromedriver closed the connection mid-response");
        response.extend_from_slice(&chunk[..read]);
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if response.len() >= end + 4 + length {
            break response[end + 4..end + 4 + length].to_vec();
        }
    };
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert!(
        value["value"].get("error").is_none(),
        "WebDriver {method} {path}: {value}"
    );
    value["value"].clone()
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session.
    pub fn start() -> Browser {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (deploy/local/test.sh installs chromium-driver)");
        let driver = ChildGuard(Some(child));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "eager",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1100"]
            }
        }}});
        let session = call(port, "POST", "/session", Some(&capabilities))["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Browser {
            port,
            session,
            _driver: driver,
        }
    }

    pub fn open(&self, url: &str) {
        let path = format!("/session/{}/url", self.session);
        call(self.port, "POST", &path, Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub fn run(&self, script: &str) -> Value {
        let path = format!("/session/{}/execute/sync", self.session);
        call(
            self.port,
            "POST",
            &path,
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    pub fn screenshot(&self, file: &Path) {
        let path = format!("/session/{}/screenshot", self.session);
        let png = call(self.port, "GET", &path, None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a PNG in base64");
        std::fs::write(file, bytes).expect("screenshot written");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = std::panic::catch_unwind(|| call(self.port, "DELETE", &path, None));
    }
}
