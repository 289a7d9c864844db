//! The MLLP listener: one thread per connection reads frames and waits for their answer; one
//! worker translates them, produces what they became, and answers only once the broker has
//! acknowledged it (or with AR when it cannot, so the sender keeps the message and sends it again).

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use vigil_runtime::config::KafkaConfig;
use vigil_runtime::kafka::DurableProducer;
use vigil_runtime::time::{civil_from_days, now_ms};
use vigil_runtime::{Shutdown, StopWhen};
use vigil_schemas::InputPosition;

use super::ack::{acknowledgement, AckCode, AckText};
use super::frame::{framed, Frame, FrameReader};
use super::message::{Header, Hl7Adapter, Refused, Translated};
use crate::edge::EdgeConfig;
use crate::error::ProducerError;
use crate::ingest::adapter::Reason;
use crate::ingest::handler::{Handler, IngestSummary, LiveCatalog};
use crate::ingest::{IngestConfig, Rejection};
use crate::pseudonym::PseudonymKey;

/// Most messages answered per flush.
const MAX_BATCH: usize = 1000;

/// A frame read on a connection, and where its acknowledgement goes.
struct Job {
    frame: Frame,
    reply: SyncSender<String>,
}

/// Listens on `listen` until shutdown (or the stop condition), taking HL7 v2 messages.
pub fn run_mllp(
    listen: &str,
    config: &IngestConfig,
    edge: &EdgeConfig,
    kafka: &KafkaConfig,
    key: PseudonymKey,
    shutdown: &Shutdown,
    stop: StopWhen,
) -> Result<IngestSummary, ProducerError> {
    config.validate()?;
    kafka.validate()?;
    let io_error = |source| ProducerError::Io {
        path: format!("the MLLP address {listen}"),
        source,
    };
    let listener = TcpListener::bind(listen).map_err(io_error)?;
    listener.set_nonblocking(true).map_err(io_error)?;
    let address = listener.local_addr().map_err(io_error)?;
    let catalog = LiveCatalog::load(&edge.catalog_dir, config.reload_interval)?;
    let mut handler = Handler::new(kafka, edge, key)?;
    // Event ids come from the message control id: a message sent again is recognised by them.
    handler.stamp_source = false;
    let producer = DurableProducer::new(kafka, "vigil-ingest-mllp")?;
    let (jobs, received) = mpsc::sync_channel::<Job>(config.mllp_max_connections);
    let closing = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let closing = closing.clone();
        let limits = (config.mllp_max_message, config.mllp_max_connections);
        thread::spawn(move || accept(listener, jobs, closing, limits))
    };
    info!(%address, "Taking HL7 v2 messages over MLLP.");
    let mut worker = Worker {
        handler,
        producer,
        catalog,
        source: format!("mllp:{address}"),
        sequence: 0,
        utc_offset_minutes: edge.hospital_utc_offset_minutes,
    };
    let result = worker.serve(&received, shutdown, &stop);
    closing.store(true, Ordering::SeqCst);
    drop(received);
    if acceptor.join().is_err() {
        warn!("The MLLP acceptor thread panicked.");
    }
    result
}

/// Owns the producer: every message is translated, produced and answered here, in order.
struct Worker {
    handler: Handler,
    producer: DurableProducer,
    catalog: LiveCatalog,
    source: String,
    sequence: i64,
    utc_offset_minutes: i32,
}

/// A message's answer, sent once what it became is durable.
struct Pending {
    reply: SyncSender<String>,
    header: Header,
    code: AckCode,
    events: usize,
    refused: Vec<Refused>,
}

impl Worker {
    fn serve(
        &mut self,
        received: &Receiver<Job>,
        shutdown: &Shutdown,
        stop: &StopWhen,
    ) -> Result<IngestSummary, ProducerError> {
        let mut last_input = Instant::now();
        loop {
            if shutdown.is_requested() || stop.reached(last_input.elapsed()) {
                self.handler.stats.publish_due(&self.producer, true)?;
                self.producer.flush()?;
                self.handler.publish_metrics();
                info!(summary = ?self.handler.summary, "MLLP ingest stopped; every message answered AA or AE is stored.");
                return Ok(std::mem::take(&mut self.handler.summary));
            }
            self.catalog.refresh();
            let first = match received.recv_timeout(Duration::from_millis(100)) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    self.handler.stats.publish_due(&self.producer, false)?;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Ok(std::mem::take(&mut self.handler.summary))
                }
            };
            last_input = Instant::now();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match received.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.answer(batch)?;
        }
    }

    /// Takes a batch of messages and answers each once the broker holds what it became.
    fn answer(&mut self, batch: Vec<Job>) -> Result<(), ProducerError> {
        let mut pending = Vec::with_capacity(batch.len());
        let mut outcome = Ok(());
        for job in batch {
            let translated = self.translate(&job.frame);
            if outcome.is_ok() {
                outcome = self.take(&translated);
            }
            pending.push(Pending {
                reply: job.reply,
                events: translated.events.len(),
                header: translated.header,
                code: translated.code,
                refused: translated.refused,
            });
        }
        let outcome = outcome
            .and_then(|()| {
                Ok(self
                    .handler
                    .stats
                    .publish_due(&self.producer, false)
                    .map(|_| ())?)
            })
            .and_then(|()| Ok(self.producer.flush()?));
        let now = hl7_now(self.utc_offset_minutes);
        for p in pending {
            let ack = match (&outcome, p.code) {
                (Err(_), _) => {
                    acknowledgement(&p.header, AckCode::Reject, AckText::Unavailable, &now)
                }
                (Ok(()), AckCode::Accept) => {
                    acknowledgement(&p.header, p.code, AckText::Accepted(p.events), &now)
                }
                (Ok(()), code) => {
                    acknowledgement(&p.header, code, AckText::Refused(&p.refused), &now)
                }
            };
            // A sender that went away gets no answer; it sends the message again.
            let _ = p.reply.send(ack);
        }
        self.handler.publish_metrics();
        outcome
    }

    fn translate(&mut self, frame: &Frame) -> Translated {
        match frame {
            Frame::Message(bytes) => {
                let adapter = Hl7Adapter {
                    catalog: &self.catalog.catalog,
                    key: &self.handler.key,
                    utc_offset_minutes: self.utc_offset_minutes,
                    now_ms: now_ms(),
                };
                adapter.translate(bytes)
            }
            Frame::TooLarge { bytes } => too_large(*bytes),
        }
    }

    /// Produces what a message became: its events, and a dead letter per refused part.
    fn take(&mut self, translated: &Translated) -> Result<(), ProducerError> {
        self.sequence += 1;
        self.handler.summary.records += 1;
        let at = InputPosition {
            topic: &self.source,
            partition: 0,
            offset: self.sequence,
        };
        let now = now_ms();
        for event in &translated.events {
            self.handler
                .produce(&self.producer, event.clone(), None, None, at, now)?;
        }
        for part in &translated.refused {
            self.handler
                .dead_letter(&self.producer, &part.rejection, &translated.copy, at, now)?;
        }
        Ok(())
    }
}

/// A frame over the size limit: refused whole, and dead-lettered by its size.
fn too_large(bytes: usize) -> Translated {
    Translated {
        header: Header::default(),
        hospital: String::new(),
        events: Vec::new(),
        refused: vec![Refused {
            rejection: Rejection {
                hospital: String::new(),
                reason: Reason::RecordTooLarge,
                detail: format!("the message of {bytes} bytes is over ingest.mllp_max_message"),
                columns: Vec::new(),
            },
            segment: String::new(),
            sequence: 0,
        }],
        code: AckCode::Reject,
        copy: format!("<message of {bytes} bytes over the size limit withheld>"),
    }
}

/// Accepts connections until the worker closes, each served on its own thread.
fn accept(
    listener: TcpListener,
    jobs: SyncSender<Job>,
    closing: Arc<AtomicBool>,
    (max_message, max_connections): (usize, usize),
) {
    let open = Arc::new(AtomicUsize::new(0));
    while !closing.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if open.load(Ordering::SeqCst) >= max_connections {
                    warn!(%peer, max_connections, "Too many MLLP connections; closing a new one (its sender retries).");
                    continue;
                }
                open.fetch_add(1, Ordering::SeqCst);
                let (jobs, closing, open) = (jobs.clone(), closing.clone(), open.clone());
                thread::spawn(move || {
                    connection(stream, peer, &jobs, &closing, max_message);
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(error) => {
                warn!(%error, "An MLLP connection could not be accepted.");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Serves one connection: a frame, its answer, the next frame (MLLP is one message at a time).
fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    jobs: &SyncSender<Job>,
    closing: &AtomicBool,
    max_message: usize,
) {
    let ready = stream.set_nonblocking(false).is_ok()
        && stream
            .set_read_timeout(Some(Duration::from_millis(250)))
            .is_ok()
        && stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .is_ok();
    if !ready {
        return;
    }
    info!(%peer, "MLLP connection opened.");
    let mut reader = FrameReader::new(&stream, max_message);
    let mut writer = &stream;
    while !closing.load(Ordering::SeqCst) {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                let (reply, answer) = mpsc::sync_channel(1);
                if jobs.send(Job { frame, reply }).is_err() {
                    break;
                }
                let Ok(ack) = answer.recv() else { break };
                if writer.write_all(&framed(ack.as_bytes())).is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    info!(%peer, "MLLP connection closed.");
}

/// The current time as an HL7 DTM in the hospitals' time zone.
fn hl7_now(offset_minutes: i32) -> String {
    let local = now_ms() + i64::from(offset_minutes) * 60_000;
    let days = local.div_euclid(86_400_000) as i32;
    let (year, month, day) = civil_from_days(days);
    let seconds = local.rem_euclid(86_400_000) / 1000;
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let offset = offset_minutes.abs();
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}{sign}{:02}{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        offset / 60,
        offset % 60
    )
}
