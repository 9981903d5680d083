//! The backup Job's copy of a snapshot to an S3-compatible store (`spec.backup.s3`): presigned
//! PUTs (AWS Signature V4, signed by rusty-s3) sent with reqwest, path-style. The credentials
//! come from the Job's environment (the user's Secret) and are never logged; neither is a signed
//! URL (reqwest's errors are stripped of it).

use std::path::Path;
use std::time::Duration;

use reqwest::header::CONTENT_LENGTH;
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use thiserror::Error;

/// How long a signed request stays valid: long enough for a snapshot of a few GiB on a slow
/// link, and no longer.
const SIGNED_FOR: Duration = Duration::from_secs(6 * 3600);

/// The environment variables the credentials are read from (the Secret's keys).
pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";

#[derive(Debug, Error)]
pub enum UploadError {
    #[error("the store's endpoint {endpoint:?} cannot be used: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("{0} is not set or empty: the credentials Secret needs that key")]
    MissingCredential(&'static str),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("an HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("sending {key} to {endpoint}: {source}")]
    Send {
        key: String,
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the store refused {key}: HTTP {status} {code}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Refused {
        key: String,
        status: u16,
        code: String,
        message: String,
    },
}

/// Where the objects go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `http(s)://host[:port]`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// What keys start with.
    pub prefix: String,
}

impl Target {
    /// The object key of `file`.
    pub fn key(&self, file: &str) -> String {
        format!("{}{file}", self.prefix)
    }

    /// `s3://<bucket>/<key>` of `file`, as the status shows it.
    pub fn location(&self, file: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(file))
    }
}

/// The credentials from the environment.
pub fn credentials_from_env() -> Result<Credentials, UploadError> {
    let read = |name: &'static str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or(UploadError::MissingCredential(name))
    };
    Ok(Credentials::new(
        read(ACCESS_KEY_ID)?,
        read(SECRET_ACCESS_KEY)?,
    ))
}

/// PUTs each of `files` (in `dir`) to `target`, in order, each in one request.
pub async fn upload(
    target: &Target,
    credentials: &Credentials,
    dir: &Path,
    files: &[&str],
) -> Result<(), UploadError> {
    let endpoint_error = |reason: String| UploadError::Endpoint {
        endpoint: target.endpoint.clone(),
        reason,
    };
    let url = url::Url::parse(&target.endpoint).map_err(|e| endpoint_error(e.to_string()))?;
    let bucket = Bucket::new(
        url,
        UrlStyle::Path,
        target.bucket.clone(),
        target.region.clone(),
    )
    .map_err(|e| endpoint_error(e.to_string()))?;
    // reqwest is built with rustls and no crypto provider of its own: ring, as for kube.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(UploadError::Client)?;
    for file in files {
        let key = target.key(file);
        let path = dir.join(file);
        let read_error = |source| UploadError::Read {
            path: path.display().to_string(),
            source,
        };
        let body = tokio::fs::File::open(&path).await.map_err(read_error)?;
        let len = body.metadata().await.map_err(read_error)?.len();
        let signed = bucket.put_object(Some(credentials), &key).sign(SIGNED_FOR);
        let response = client
            .put(signed)
            .header(CONTENT_LENGTH, len)
            .body(reqwest::Body::from(body))
            .send()
            .await
            .map_err(|e| UploadError::Send {
                key: key.clone(),
                endpoint: target.endpoint.clone(),
                source: e.without_url(),
            })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let (code, message) = error_document(&text);
            return Err(UploadError::Refused {
                key,
                status: status.as_u16(),
                code,
                message,
            });
        }
    }
    Ok(())
}

/// The `Code` and `Message` of an S3 error document (empty where it has none).
pub fn error_document(body: &str) -> (String, String) {
    let element = |name: &str| {
        body.split_once(&format!("<{name}>"))
            .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
            .map(|(value, _)| value.trim().to_owned())
            .unwrap_or_default()
    };
    (element("Code"), element("Message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_locations_follow_the_prefix() {
        let target = Target {
            endpoint: "http://s3.example:9000".to_owned(),
            bucket: "backups".to_owned(),
            region: "us-east-1".to_owned(),
            prefix: "ns/demo/".to_owned(),
        };
        assert_eq!(target.key("demo-1.db"), "ns/demo/demo-1.db");
        assert_eq!(
            target.location("demo-1.db"),
            "s3://backups/ns/demo/demo-1.db"
        );
    }

    #[test]
    fn the_code_and_message_of_an_s3_error_are_read() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code>\
                    <Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(
            error_document(body),
            (
                "NoSuchBucket".to_owned(),
                "The specified bucket does not exist".to_owned()
            )
        );
        assert_eq!(
            error_document("bad gateway"),
            (String::new(), String::new())
        );
    }
}
