//! Which Terraform failures are worth another try, and how long to wait.

use regex::Regex;
use std::time::Duration;

/// Failures that usually pass on their own: network hiccups and overloaded
/// provider APIs. Everything else fails at once.
pub const DEFAULT_TRANSIENT: &[&str] = &[
    r"(?i)connection reset by peer",
    r"(?i)connection refused",
    r"(?i)i/o timeout",
    r"(?i)TLS handshake timeout",
    r"(?i)context deadline exceeded",
    r"(?i)timeout while waiting",
    r"(?i)too many requests|\b429\b",
    r"(?i)\b50[0234]\b|bad gateway|service unavailable|gateway time-?out|internal server error",
    r"(?i)unexpected EOF",
];

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one, at most a minute.
    pub backoff: Duration,
    pub transient: Vec<Regex>,
}

impl RetryPolicy {
    pub fn new(attempts: u32, backoff: Duration, patterns: &[String]) -> Result<Self, String> {
        let transient = patterns
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|e| {
                    format!("retry pattern {p:?} is not a valid regular expression: {e}")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(RetryPolicy {
            attempts: attempts.max(1),
            backoff,
            transient,
        })
    }

    pub fn is_transient(&self, text: &str) -> bool {
        self.transient.iter().any(|r| r.is_match(text))
    }

    /// The wait after failed attempt `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.backoff
            .saturating_mul(factor)
            .min(Duration::from_secs(60))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let patterns: Vec<String> = DEFAULT_TRANSIENT.iter().map(|s| s.to_string()).collect();
        RetryPolicy::new(3, Duration::from_secs(2), &patterns).unwrap_or(RetryPolicy {
            attempts: 1,
            backoff: Duration::ZERO,
            transient: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_know_network_trouble_from_mistakes() {
        let p = RetryPolicy::default();
        assert_eq!(p.transient.len(), DEFAULT_TRANSIENT.len());
        assert!(
            p.is_transient("Error: Get \"https://pve:8006\": read tcp: connection reset by peer")
        );
        assert!(p.is_transient("unexpected status 503 Service Unavailable"));
        assert!(!p.is_transient("Error: Reference to undeclared input variable"));
        assert_eq!(p.delay(1), Duration::from_secs(2));
        assert_eq!(p.delay(3), Duration::from_secs(8));
        assert_eq!(p.delay(40), Duration::from_secs(60));
        assert!(RetryPolicy::new(2, Duration::ZERO, &["(".into()]).is_err());
    }
}
