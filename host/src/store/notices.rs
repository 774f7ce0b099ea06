//! Changes announced to the other hosts sharing a database: PostgreSQL `LISTEN/NOTIFY`
//! on one channel, `cairn`, with a payload that names what changed and never carries
//! data (the receivers read the tables). SQLite belongs to one process: nothing to tell.
//!
//! A payload is `origin \t kind \t tenant [\t detail]`: `origin` tells a host its own
//! notices apart (they are delivered to the sender too), and tenant ids and plugin
//! names cannot hold a tab (their naming rules), so the split is unambiguous.

use std::sync::LazyLock;

use super::TenantId;

/// The channel every notice goes out on.
pub const CHANNEL: &str = "cairn";

/// This process's mark on its notices: random, so that two hosts never share one.
pub static ORIGIN: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());

/// A change another host made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The tenant's log reached `position` (sent inside the append's transaction, so it
    /// arrives after the commit, or never).
    Appended { tenant: TenantId, position: u64 },
    /// The tenant's plugins changed: an upload, an activation, a verification's end.
    Plugins { tenant: TenantId },
    /// A projection's builds changed: a new build, a promotion, a deletion, a parking.
    Projections { tenant: TenantId, name: String },
    /// The tenant's limits or token changed, or it was deleted.
    Tenant { tenant: TenantId },
    /// A projection build's checkpoint moved (sent inside the batch's transaction).
    Progress {
        tenant: TenantId,
        name: String,
        build: u64,
        position: u64,
    },
    /// Not sent by anyone: the listener lost its connection and may have missed
    /// notices, so the host re-reads what it caches.
    Resync,
}

impl Notice {
    /// The payload of this notice, sent by this process.
    pub fn payload(&self) -> String {
        let origin = ORIGIN.as_str();
        match self {
            Notice::Appended { tenant, position } => {
                format!("{origin}\tappended\t{tenant}\t{position}")
            }
            Notice::Plugins { tenant } => format!("{origin}\tplugins\t{tenant}"),
            Notice::Projections { tenant, name } => {
                format!("{origin}\tprojections\t{tenant}\t{name}")
            }
            Notice::Tenant { tenant } => format!("{origin}\ttenant\t{tenant}"),
            Notice::Progress {
                tenant,
                name,
                build,
                position,
            } => format!("{origin}\tprogress\t{tenant}\t{name}\t{build}\t{position}"),
            Notice::Resync => format!("{origin}\tresync"),
        }
    }

    /// The notice in a payload sent by another process; `None` for this process's own
    /// notices and for anything it cannot read (a newer host's kinds, say).
    pub fn from_payload(payload: &str) -> Option<Notice> {
        let mut parts = payload.split('\t');
        let origin = parts.next()?;
        if origin == ORIGIN.as_str() {
            return None;
        }
        let kind = parts.next()?;
        let tenant = TenantId::parse(parts.next()?)?;
        let notice = match kind {
            "appended" => Notice::Appended {
                tenant,
                position: parts.next()?.parse().ok()?,
            },
            "plugins" => Notice::Plugins { tenant },
            "projections" => Notice::Projections {
                tenant,
                name: parts.next()?.to_owned(),
            },
            "tenant" => Notice::Tenant { tenant },
            "progress" => Notice::Progress {
                tenant,
                name: parts.next()?.to_owned(),
                build: parts.next()?.parse().ok()?,
                position: parts.next()?.parse().ok()?,
            },
            _ => return None,
        };
        Some(notice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_in_another_process_and_not_in_its_own() {
        let tenant = TenantId::parse("acme").unwrap();
        let notices = [
            Notice::Appended {
                tenant: tenant.clone(),
                position: 42,
            },
            Notice::Plugins {
                tenant: tenant.clone(),
            },
            Notice::Projections {
                tenant: tenant.clone(),
                name: "balances".to_owned(),
            },
            Notice::Tenant {
                tenant: tenant.clone(),
            },
            Notice::Progress {
                tenant,
                name: "balances".to_owned(),
                build: 3,
                position: 99,
            },
        ];
        for notice in notices {
            let payload = notice.payload();
            assert_eq!(Notice::from_payload(&payload), None, "our own: {payload}");
            let theirs = payload.replacen(ORIGIN.as_str(), "another-host", 1);
            assert_eq!(Notice::from_payload(&theirs), Some(notice));
        }
        assert_eq!(Notice::from_payload("x\tunknown\tacme"), None);
    }
}
