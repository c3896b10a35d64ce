//! Tiers (`RATES_TIERS`): per tier, requests a second, burst, open
//! WebSocket and event-stream connections, streams per connection.

use std::sync::Arc;

/// The tier of clients who show no credential.
pub const ANONYMOUS: &str = "anonymous";

/// One tier's limits. A rate of 0 means no request limit; connections 0
/// means no cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub name: String,
    pub per_second: u32,
    pub burst: u32,
    pub connections: u32,
    pub streams: u32,
}

impl Tier {
    /// `RateLimit-Policy`'s value: the quota (the burst), its window in
    /// seconds (the time the rate takes to refill it) and the tier's name.
    pub fn policy(&self) -> String {
        let window = u64::from(self.burst.max(1)).div_ceil(u64::from(self.per_second.max(1)));
        format!("{};w={window};tier=\"{}\"", self.burst.max(1), self.name)
    }
}

/// Every tier of the deployment; `anonymous` always among them.
#[derive(Debug, Clone)]
pub struct Tiers {
    tiers: Vec<Arc<Tier>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TiersError {
    #[error("RATES_TIERS: '{0}' is not NAME:RATE/BURST/CONNECTIONS/STREAMS")]
    Malformed(String),
    #[error("RATES_TIERS: tier '{0}' is named twice")]
    Duplicate(String),
    #[error("RATES_TIERS: tier '{0}': streams per connection must be 1 to 4096")]
    Streams(String),
}

impl Tiers {
    /// `spec` as `RATES_TIERS` has it (`free:100/200/16/64,pro:...`), over
    /// `anonymous`, the tier of the older per-IP settings, which `spec`
    /// may redefine.
    pub fn parse(spec: &str, anonymous: Tier) -> Result<Self, TiersError> {
        let mut tiers: Vec<Tier> = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let tier = parse_entry(entry)?;
            if tiers.iter().any(|t| t.name == tier.name) {
                return Err(TiersError::Duplicate(tier.name));
            }
            tiers.push(tier);
        }
        if !tiers.iter().any(|t| t.name == ANONYMOUS) {
            tiers.insert(0, anonymous);
        }
        Ok(Self {
            tiers: tiers.into_iter().map(Arc::new).collect(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Tier>> {
        self.tiers.iter().find(|t| t.name == name)
    }

    pub fn anonymous(&self) -> &Arc<Tier> {
        // `parse` puts it there.
        self.get(ANONYMOUS).unwrap_or(&self.tiers[0])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tier>> {
        self.tiers.iter()
    }
}

fn parse_entry(entry: &str) -> Result<Tier, TiersError> {
    let malformed = || TiersError::Malformed(entry.to_owned());
    let (name, limits) = entry.split_once(':').ok_or_else(malformed)?;
    let name = name.trim();
    let name_ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(malformed());
    }
    let numbers: Vec<u32> = limits
        .split('/')
        .map(|n| n.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| malformed())?;
    let [per_second, burst, connections, streams] = numbers[..] else {
        return Err(malformed());
    };
    if !(1..=4096).contains(&streams) {
        return Err(TiersError::Streams(name.to_owned()));
    }
    Ok(Tier {
        name: name.to_owned(),
        per_second,
        burst: burst.max(1),
        connections,
        streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anon() -> Tier {
        Tier {
            name: ANONYMOUS.into(),
            per_second: 50,
            burst: 100,
            connections: 256,
            streams: 64,
        }
    }

    #[test]
    fn the_contract_example_parses() {
        let t = Tiers::parse(
            "anonymous:50/100/8/16,free:100/200/16/64,pro:1000/2000/256/1024",
            anon(),
        )
        .unwrap();
        assert_eq!(t.anonymous().connections, 8);
        let pro = t.get("pro").unwrap();
        assert_eq!(
            (pro.per_second, pro.burst, pro.connections, pro.streams),
            (1000, 2000, 256, 1024)
        );
        assert_eq!(t.iter().count(), 3);
        assert_eq!(pro.policy(), "2000;w=2;tier=\"pro\"");
    }

    #[test]
    fn anonymous_defaults_to_the_per_ip_settings() {
        let t = Tiers::parse("", anon()).unwrap();
        assert_eq!(**t.anonymous(), anon());
        let t = Tiers::parse("pro:1/2/3/4", anon()).unwrap();
        assert_eq!(**t.anonymous(), anon());
        assert!(t.get("pro").is_some());
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            "pro",
            "pro:1/2/3",
            "pro:1/2/3/4/5",
            "pro:a/2/3/4",
            ":1/2/3/4",
            "p o:1/2/3/4",
            "pro:-1/2/3/4",
        ] {
            assert!(
                matches!(Tiers::parse(bad, anon()), Err(TiersError::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(
            Tiers::parse("pro:1/2/3/4,pro:1/2/3/4", anon()).unwrap_err(),
            TiersError::Duplicate("pro".into())
        );
        assert_eq!(
            Tiers::parse("pro:1/2/3/0", anon()).unwrap_err(),
            TiersError::Streams("pro".into())
        );
    }
}
