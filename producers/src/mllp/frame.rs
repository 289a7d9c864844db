//! MLLP framing: a message is `0x0B` + content + `0x1C 0x0D`; bytes between frames are ignored.
//!
//! Written here rather than taken from `hl7-mllp-codec`: that codec buffers a frame of any size
//! (one peer could exhaust the edge's memory) and rescans its buffer on every read. A frame over
//! the limit is read to its end and reported by size, so the sender still gets an answer.

use std::io::{self, Read};

const START: u8 = 0x0B;
const END: u8 = 0x1C;
const CR: u8 = 0x0D;

/// One frame read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Message(Vec<u8>),
    /// The frame was longer than the limit: its content was dropped as it came.
    TooLarge {
        bytes: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames.
    Idle,
    /// Inside a frame, keeping its bytes.
    Keeping,
    /// Inside a frame that is over the limit, counting its bytes.
    Discarding,
}

/// Reads frames from a byte stream; partial frames survive read timeouts.
pub struct FrameReader<R> {
    inner: R,
    max_bytes: usize,
    state: State,
    content: Vec<u8>,
    discarded: usize,
    /// The previous byte was 0x1C inside a frame.
    after_end: bool,
    chunk: Box<[u8]>,
    chunk_len: usize,
    chunk_pos: usize,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R, max_bytes: usize) -> Self {
        FrameReader {
            inner,
            max_bytes,
            state: State::Idle,
            content: Vec::new(),
            discarded: 0,
            after_end: false,
            chunk: vec![0; 64 * 1024].into_boxed_slice(),
            chunk_len: 0,
            chunk_pos: 0,
        }
    }

    /// The next frame; `None` at the end of the stream (a frame cut off there is dropped: its
    /// sender got no acknowledgement and sends it again). A read timeout is an error of kind
    /// `WouldBlock` or `TimedOut`, after which reading may go on.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            while self.chunk_pos < self.chunk_len {
                let byte = self.chunk[self.chunk_pos];
                self.chunk_pos += 1;
                if let Some(frame) = self.push(byte) {
                    return Ok(Some(frame));
                }
            }
            let read = self.inner.read(&mut self.chunk)?;
            if read == 0 {
                return Ok(None);
            }
            self.chunk_len = read;
            self.chunk_pos = 0;
        }
    }

    fn push(&mut self, byte: u8) -> Option<Frame> {
        if self.state == State::Idle {
            if byte == START {
                self.begin();
            }
            return None;
        }
        if self.after_end {
            self.after_end = false;
            if byte == CR {
                return Some(self.finish());
            }
            self.keep(END);
        }
        match byte {
            END => self.after_end = true,
            // A new frame inside one: the sender gave up on the first and starts over.
            START => self.begin(),
            _ => self.keep(byte),
        }
        None
    }

    fn begin(&mut self) {
        self.state = State::Keeping;
        self.content.clear();
        self.discarded = 0;
        self.after_end = false;
    }

    fn keep(&mut self, byte: u8) {
        match self.state {
            State::Keeping if self.content.len() < self.max_bytes => self.content.push(byte),
            State::Keeping => {
                self.discarded = self.content.len() + 1;
                self.content = Vec::new();
                self.state = State::Discarding;
            }
            State::Discarding => self.discarded += 1,
            State::Idle => {}
        }
    }

    fn finish(&mut self) -> Frame {
        let state = std::mem::replace(&mut self.state, State::Idle);
        if state == State::Discarding {
            return Frame::TooLarge {
                bytes: self.discarded,
            };
        }
        Frame::Message(std::mem::take(&mut self.content))
    }
}

/// `content` framed for sending.
pub fn framed(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 3);
    out.push(START);
    out.extend_from_slice(content);
    out.extend_from_slice(&[END, CR]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that yields its bytes a few at a time, then fails with a timeout once.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
        timed_out: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.bytes.len() / 2 && !self.timed_out {
                self.timed_out = true;
                return Err(io::Error::new(io::ErrorKind::WouldBlock, "timeout"));
            }
            let n = self.step.min(buf.len()).min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn read_all(bytes: Vec<u8>, max: usize, step: usize) -> Vec<Frame> {
        let mut reader = FrameReader::new(
            Trickle {
                bytes,
                at: 0,
                step,
                timed_out: false,
            },
            max,
        );
        let mut frames = Vec::new();
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return frames,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn frames_split_anywhere_and_across_a_timeout_come_out_whole() {
        let mut bytes = b"noise".to_vec();
        bytes.extend(framed("MSH|^~\\&|中文|\rPID|1\r".as_bytes()));
        bytes.extend(framed(b"a\x1cb"));
        bytes.extend(b"\r\n");
        bytes.extend(framed(b"second"));
        for step in [1, 2, 3, 7, 1000] {
            assert_eq!(
                read_all(bytes.clone(), 1024, step),
                vec![
                    Frame::Message("MSH|^~\\&|中文|\rPID|1\r".as_bytes().to_vec()),
                    Frame::Message(b"a\x1cb".to_vec()),
                    Frame::Message(b"second".to_vec()),
                ],
                "read {step} bytes at a time"
            );
        }
    }

    #[test]
    fn a_frame_over_the_limit_is_reported_by_size_and_the_next_one_still_reads() {
        let mut bytes = framed(&vec![b'x'; 3 * 1024 * 1024]);
        bytes.extend(framed(b"after"));
        assert_eq!(
            read_all(bytes, 1024 * 1024, 8192),
            vec![
                Frame::TooLarge {
                    bytes: 3 * 1024 * 1024
                },
                Frame::Message(b"after".to_vec())
            ]
        );
    }

    #[test]
    fn a_frame_cut_off_by_the_end_of_the_stream_or_a_new_start_is_dropped() {
        let mut bytes = framed(b"whole");
        bytes.extend(b"\x0bcut off and restarted");
        bytes.extend(framed(b"again"));
        bytes.extend(b"\x0bcut off by the end");
        assert_eq!(
            read_all(bytes, 1024, 5),
            vec![
                Frame::Message(b"whole".to_vec()),
                Frame::Message(b"again".to_vec())
            ]
        );
    }
}
