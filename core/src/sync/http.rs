//! The real transport: HTTP/JSON over reqwest (blocking, rustls). Plain
//! HTTP is refused except to loopback or with an explicit opt-in, because
//! tokens and evidence must not cross a network in the clear.

use std::io::Read;
use std::borrow::Cow;
use std::time::Duration;

use gridwork_protocol::limits::REPLY_MAX_BYTES;
use gridwork_protocol::OperationEnvelope;
use gridwork_protocol::api::{
    self, BlobStatus, CreateBlobRequest, ErrorBody, LoginRequest, PhotoRendition, PullResponse, PushRequest, PushResponse, RefreshRequest, SkipSpan, TokenResponse,
};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::server_url;
use super::tls::TlsConfig;
use super::transport::{Transport, TransportError};
use crate::error::{Error, Result};

pub struct HttpTransport {
    base: String,
    device_id: String,
    client: Client,
}

impl HttpTransport {
    /// `allow_insecure_http`: permit `http://` to a non-loopback host.
    pub fn new(server_url: &str, device_id: &str, allow_insecure_http: bool, tls: &TlsConfig) -> Result<HttpTransport> {
        let url = server_url::parse(server_url)?;
        url.check_security(allow_insecure_http)?;
        let base = url.base;
        let mut builder = Client::builder();
        // Only https needs the trust store: loopback http (tests, the demo)
        // works on a machine with no CA certificates at all.
        if url.https {
            builder = builder.use_preconfigured_tls(tls.client_config()?);
        }
        let client = builder
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("gridwork-core/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| Error::InvalidServerUrl("cannot build an HTTP client".into()))?;
        Ok(HttpTransport { base, device_id: device_id.to_owned(), client })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header(api::DEVICE_ID_HEADER, &self.device_id)
            .header(reqwest::header::ACCEPT_ENCODING, "gzip")
    }
}

/// A JSON body, gzip-compressed from [`api::COMPRESS_MIN_BYTES`] on: a
/// push of a long offline backlog is mostly repeated keys and text.
fn json_body<T: serde::Serialize>(request: RequestBuilder, body: &T) -> RequestBuilder {
    use std::io::Write;
    let json = serde_json::to_vec(body).expect("protocol types serialize");
    let request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
    if json.len() < api::COMPRESS_MIN_BYTES {
        return request.body(json);
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(json.len() / 4), flate2::Compression::fast());
    // Writing to memory cannot fail.
    let gzipped = encoder.write_all(&json).and_then(|()| encoder.finish()).expect("gzip into memory");
    request.header(reqwest::header::CONTENT_ENCODING, "gzip").body(gzipped)
}

fn send<T: DeserializeOwned>(request: RequestBuilder) -> Result<T, TransportError> {
    let response = request.send().map_err(|e| TransportError::Network(describe(&e)))?;
    read(response)
}

fn describe(error: &reqwest::Error) -> String {
    // A TLS refusal is buried in the source chain; its text names no host.
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if text.contains(super::tls::PIN_MISMATCH) {
            return super::tls::PIN_MISMATCH.into();
        }
        if text.contains("invalid peer certificate") {
            return "the server's certificate is not trusted".into();
        }
        source = cause.source();
    }
    if error.is_timeout() {
        "timeout".into()
    } else if error.is_connect() {
        "cannot connect".into()
    } else {
        "connection failed".into()
    }
}

/// The bytes of a 2xx reply, or the error it carries.
/// A binary reply of at most `max_bytes`: a server sending more is refused
/// before it fills the phone's memory.
fn send_for_bytes(request: RequestBuilder, max_bytes: u64) -> Result<Vec<u8>, TransportError> {
    let response = request.send().map_err(|e| TransportError::Network(describe(&e)))?;
    if response.status().is_success() {
        return read_at_most(response, max_bytes);
    }
    // Not 2xx: `read` turns the reply into its error.
    read::<serde_json::Value>(response).map(|_| Vec::new())
}

/// A reply's body, refused past `max_bytes` (counted decompressed): a
/// server sending more, or a small gzip bomb, never fills the phone's
/// memory. A body cut off mid-transfer is a network failure; a complete one
/// that does not decompress is a malformed reply.
fn read_at_most(response: Response, max_bytes: u64) -> Result<Vec<u8>, TransportError> {
    let encoding = response.headers().get(reqwest::header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").to_ascii_lowercase());
    let mut raw = Vec::new();
    response.take(max_bytes + 1).read_to_end(&mut raw).map_err(|e| TransportError::Network(e.kind().to_string()))?;
    let bytes = match encoding.as_deref() {
        None | Some("identity") => raw,
        Some("gzip") if raw.len() as u64 <= max_bytes => {
            let mut bytes = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .take(max_bytes + 1)
                .read_to_end(&mut bytes)
                .map_err(|_| TransportError::Malformed("reply is not valid gzip".into()))?;
            bytes
        }
        Some("gzip") => raw,
        Some(_) => return Err(TransportError::Malformed("reply in an encoding the device did not ask for".into())),
    };
    if bytes.len() as u64 > max_bytes {
        return Err(TransportError::Malformed(format!("reply larger than {max_bytes} bytes")));
    }
    Ok(bytes)
}

fn read<T: DeserializeOwned>(response: Response) -> Result<T, TransportError> {
    let status = response.status();
    let retry_after_ms = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map(|seconds| seconds.clamp(0, 86_400) * 1000);
    // A body cut off mid-transfer is a network failure, not a server answer.
    let bytes = read_at_most(response, REPLY_MAX_BYTES)?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|_| TransportError::Malformed("reply is not the expected JSON".into()));
    }
    let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
    let (code, message) = match body {
        Some(body) => (body.code, body.message),
        None => (format!("http_{}", status.as_u16()), "the server answered without an error body".to_owned()),
    };
    Err(TransportError::Http { status: status.as_u16(), code, message, retry_after_ms })
}

impl Transport for HttpTransport {
    fn login(&self, username: &str, password: &str) -> Result<TokenResponse, TransportError> {
        let body = LoginRequest { username: username.to_owned(), password: password.to_owned() };
        send(self.request(reqwest::Method::POST, "/v1/auth/login").json(&body))
    }

    fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, TransportError> {
        let body = RefreshRequest { refresh_token: refresh_token.to_owned() };
        send(self.request(reqwest::Method::POST, "/v1/auth/refresh").json(&body))
    }

    fn push(&self, token: &str, operations: &[OperationEnvelope]) -> Result<PushResponse, TransportError> {
        let body = PushRequest { operations: Cow::Borrowed(operations) };
        send(json_body(self.request(reqwest::Method::POST, "/v1/push").bearer_auth(token), &body))
    }

    fn pull(&self, token: &str, since: i64, limit: u32, skip: &[SkipSpan]) -> Result<PullResponse, TransportError> {
        let skip = if skip.is_empty() { String::new() } else { format!("&skip={}", SkipSpan::to_query(skip)) };
        send(self.request(reqwest::Method::GET, &format!("/v1/pull?since={since}&limit={limit}{skip}")).bearer_auth(token))
    }

    fn blob_create(&self, token: &str, sha256: &str, size: u64, preview_of: Option<&str>) -> Result<BlobStatus, TransportError> {
        let body = CreateBlobRequest { sha256: sha256.to_owned(), size, preview_of: preview_of.map(str::to_owned) };
        send(self.request(reqwest::Method::POST, "/v1/blobs").bearer_auth(token).json(&body))
    }

    fn blob_status(&self, token: &str, sha256: &str) -> Result<BlobStatus, TransportError> {
        send(self.request(reqwest::Method::GET, &format!("/v1/blobs/{sha256}/status")).bearer_auth(token))
    }

    fn blob_chunk(&self, token: &str, sha256: &str, offset: u64, chunk: &[u8], announce_size: Option<u64>) -> Result<BlobStatus, TransportError> {
        let announce = announce_size.map(|size| format!("&size={size}")).unwrap_or_default();
        send(
            self.request(reqwest::Method::PUT, &format!("/v1/blobs/{sha256}/chunks?offset={offset}{announce}"))
                .bearer_auth(token)
                .header("content-type", "application/octet-stream")
                .header("x-gridwork-chunk-sha256", hex::encode(Sha256::digest(chunk)))
                .body(chunk.to_vec()),
        )
    }

    fn photo(&self, token: &str, sha256: &str, rendition: PhotoRendition) -> Result<Vec<u8>, TransportError> {
        send_for_bytes(
            self.request(reqwest::Method::GET, &format!("/v1/blobs/{sha256}?rendition={}", rendition.as_query())).bearer_auth(token),
            rendition.max_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// A hostile server that answers every request with `status` and a body
    /// of `len` spaces (as JSON whitespace, it would parse if it were read).
    fn flooding_server(len: u64) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut request = [0u8; 4096];
                let _ = std::io::Read::read(&mut stream, &mut request);
                let _ = write!(stream, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n");
                let block = vec![b' '; 1 << 20];
                let mut sent = 0;
                while sent < len {
                    let n = block.len().min((len - sent) as usize);
                    if stream.write_all(&block[..n]).is_err() {
                        return; // the client stopped reading: as it should
                    }
                    sent += n as u64;
                }
            }
        });
        url
    }

    /// A server that answers one request with this head and body.
    fn canned_server(head: &str, body: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let head = head.to_owned();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut request = [0u8; 4096];
                let _ = std::io::Read::read(&mut stream, &mut request);
                let _ = write!(stream, "HTTP/1.1 200 OK\r\n{head}content-length: {}\r\n\r\n", body.len());
                let _ = stream.write_all(&body);
            }
        });
        url
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_replies_are_read_within_the_limit_counted_decompressed() {
        let pull = |url: String| HttpTransport::new(&url, "device", false, &TlsConfig::default()).unwrap().pull("token", 0, 10, &[]);
        let page = br#"{"changes": [], "next_cursor": 7, "has_more": false, "server_time_ms": 1}"#;
        let gzipped = "content-type: application/json\r\ncontent-encoding: gzip\r\n";
        match pull(canned_server(gzipped, gzip(page))) {
            Ok(reply) => assert_eq!(reply.next_cursor, 7),
            Err(e) => panic!("a gzip page is read: {e:?}"),
        }
        // A bomb: 40 KiB on the wire, past the reply limit once inflated.
        let bomb = gzip(&vec![b' '; REPLY_MAX_BYTES as usize + 1024]);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        match pull(canned_server(gzipped, bomb)) {
            Err(TransportError::Malformed(why)) => assert!(why.contains("larger than"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(matches!(pull(canned_server(gzipped, page.to_vec())), Err(TransportError::Malformed(why)) if why.contains("gzip")));
        let brotli = "content-type: application/json\r\ncontent-encoding: br\r\n";
        assert!(matches!(pull(canned_server(brotli, page.to_vec())), Err(TransportError::Malformed(why)) if why.contains("encoding")));
    }

    #[test]
    fn a_reply_past_its_limit_is_refused_not_read_to_the_end() {
        let transport = HttpTransport::new(&flooding_server(REPLY_MAX_BYTES + (8 << 20)), "device", false, &TlsConfig::default()).unwrap();
        match transport.pull("token", 0, 10, &[]) {
            Err(TransportError::Malformed(why)) => assert!(why.contains("larger than"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let transport = HttpTransport::new(&flooding_server(PhotoRendition::Thumb.max_bytes() + 1), "device", false, &TlsConfig::default()).unwrap();
        assert!(matches!(transport.photo("token", &"a".repeat(64), PhotoRendition::Thumb), Err(TransportError::Malformed(_))));
    }
}
