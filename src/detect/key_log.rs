//! Turning a key source's press/release events into [`DetectedKey`]s with times relative to
//! the start of the input.

use std::time::Instant;

use super::DetectedKey;
use crate::dtmf::KeyEvent;

/// The keys one source reported on one stream. Every source reports a press before its
/// release and releases a press before the next one starts, so one open press is enough.
#[derive(Debug)]
pub(super) struct KeyLog {
    /// The virtual instant of the input's start.
    origin: Instant,
    stream: Option<String>,
    keys: Vec<DetectedKey>,
    open: Option<usize>,
}

impl KeyLog {
    pub(super) fn new(origin: Instant, stream: Option<String>) -> KeyLog {
        KeyLog {
            origin,
            stream,
            keys: Vec::new(),
            open: None,
        }
    }

    /// Records one event: a press opens a key, its release fills in the duration.
    pub(super) fn record(&mut self, event: KeyEvent) {
        match event {
            KeyEvent::Pressed { key, source, at } => {
                self.open = Some(self.keys.len());
                self.keys.push(DetectedKey {
                    key,
                    source,
                    stream: self.stream.clone(),
                    start: at.saturating_duration_since(self.origin),
                    duration: None,
                });
            }
            KeyEvent::Released { key, duration, .. } => {
                let open = self.open.take().and_then(|i| self.keys.get_mut(i));
                if let Some(pressed) = open.filter(|k| k.key == key) {
                    pressed.duration = Some(duration);
                }
            }
        }
    }

    pub(super) fn into_keys(self) -> Vec<DetectedKey> {
        self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::{Key, KeySource};
    use std::time::Duration;

    #[test]
    fn presses_get_their_release_duration() {
        let t0 = Instant::now();
        let mut log = KeyLog::new(t0, Some("s".into()));
        let source = KeySource::Inband;
        let at = t0 + Duration::from_millis(1240);
        log.record(KeyEvent::Pressed {
            key: Key::D5,
            source,
            at,
        });
        log.record(KeyEvent::Released {
            key: Key::D5,
            source,
            at,
            duration: Duration::from_millis(110),
        });
        // A press whose release never comes keeps no duration.
        log.record(KeyEvent::Pressed {
            key: Key::D1,
            source,
            at: at + Duration::from_secs(1),
        });
        let keys = log.into_keys();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].start, Duration::from_millis(1240));
        assert_eq!(keys[0].duration, Some(Duration::from_millis(110)));
        assert_eq!(keys[0].stream.as_deref(), Some("s"));
        assert_eq!((keys[1].key, keys[1].duration), (Key::D1, None));
    }
}
