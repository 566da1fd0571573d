//! Registry hosts: one parse of a ServerURL, one table of IBM's hosts.

use std::fmt;

/// An IBM Cloud Container Registry region (../shared/ibm-api.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Region {
    /// `icr.io`: the global registry.
    Global,
    /// Dallas.
    UsSouth,
    /// London.
    EuGb,
    /// Frankfurt.
    EuDe,
    /// Sydney.
    AuSyd,
    /// Tokyo.
    JpTok,
    /// Osaka.
    JpOsa,
    /// Toronto.
    CaTor,
    /// São Paulo.
    BrSao,
    /// Madrid.
    EuEs,
    /// Montreal.
    CaMon,
    /// Chennai.
    InChe,
    /// Mumbai.
    InMum,
    /// `fr2.icr.io`: in IBM's Go SDK, not in the docs tables (unverified, kept as IBM's domain).
    EuFr2,
}

impl Region {
    /// IBM's region name.
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Global => "global",
            Region::UsSouth => "us-south",
            Region::EuGb => "eu-gb",
            Region::EuDe => "eu-de",
            Region::AuSyd => "au-syd",
            Region::JpTok => "jp-tok",
            Region::JpOsa => "jp-osa",
            Region::CaTor => "ca-tor",
            Region::BrSao => "br-sao",
            Region::EuEs => "eu-es",
            Region::CaMon => "ca-mon",
            Region::InChe => "in-che",
            Region::InMum => "in-mum",
            Region::EuFr2 => "eu-fr2",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a host reaches the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    /// The public `*.icr.io` name.
    Public,
    /// A `private.*` name (IBM Cloud private network): implies the private IAM endpoint.
    Private,
    /// A deprecated `*.bluemix.net` name.
    Legacy,
}

/// Every IBM registry host, exactly (../shared/ibm-api.md §3). One edit here changes a mapping.
pub static HOSTS: &[(&str, Region, Network)] = &[
    ("icr.io", Region::Global, Network::Public),
    ("private.icr.io", Region::Global, Network::Private),
    ("registry.bluemix.net", Region::Global, Network::Legacy),
    ("us.icr.io", Region::UsSouth, Network::Public),
    ("private.us.icr.io", Region::UsSouth, Network::Private),
    ("registry.ng.bluemix.net", Region::UsSouth, Network::Legacy),
    ("uk.icr.io", Region::EuGb, Network::Public),
    ("private.uk.icr.io", Region::EuGb, Network::Private),
    ("registry.eu-gb.bluemix.net", Region::EuGb, Network::Legacy),
    ("de.icr.io", Region::EuDe, Network::Public),
    ("private.de.icr.io", Region::EuDe, Network::Private),
    ("registry.eu-de.bluemix.net", Region::EuDe, Network::Legacy),
    ("au.icr.io", Region::AuSyd, Network::Public),
    ("private.au.icr.io", Region::AuSyd, Network::Private),
    (
        "registry.au-syd.bluemix.net",
        Region::AuSyd,
        Network::Legacy,
    ),
    ("jp.icr.io", Region::JpTok, Network::Public),
    ("private.jp.icr.io", Region::JpTok, Network::Private),
    ("jp2.icr.io", Region::JpOsa, Network::Public),
    ("private.jp2.icr.io", Region::JpOsa, Network::Private),
    ("ca.icr.io", Region::CaTor, Network::Public),
    ("private.ca.icr.io", Region::CaTor, Network::Private),
    ("br.icr.io", Region::BrSao, Network::Public),
    ("private.br.icr.io", Region::BrSao, Network::Private),
    ("es.icr.io", Region::EuEs, Network::Public),
    ("private.es.icr.io", Region::EuEs, Network::Private),
    ("ca2.icr.io", Region::CaMon, Network::Public),
    ("private.ca2.icr.io", Region::CaMon, Network::Private),
    ("in.icr.io", Region::InChe, Network::Public),
    ("private.in.icr.io", Region::InChe, Network::Private),
    ("in2.icr.io", Region::InMum, Network::Public),
    ("private.in2.icr.io", Region::InMum, Network::Private),
    ("fr2.icr.io", Region::EuFr2, Network::Public),
    ("private.fr2.icr.io", Region::EuFr2, Network::Private),
];

/// The global registry, whose stored API key serves every IBM host without its own.
pub const GLOBAL_HOST: &str = "icr.io";

/// An IBM registry host, parsed from whatever form a client sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IbmHost {
    name: &'static str,
    region: Region,
    network: Network,
}

impl IbmHost {
    /// Parses a ServerURL: lower-cases it, strips `http://`/`https://`, any
    /// path, a trailing `/` and a `:443` port, then looks the host up in
    /// [`HOSTS`] by exact match. `None` means "not IBM": a plain store key.
    pub fn parse(server_url: &str) -> Option<IbmHost> {
        let s = server_url.trim();
        let lower = s.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"))
            .unwrap_or(&lower);
        let authority = rest.split('/').next().unwrap_or("");
        let host = match authority.rsplit_once(':') {
            Some((host, "443")) => host,
            Some(_) => return None, // another port is another server
            None => authority,
        };
        IbmHost::lookup(host)
    }

    /// Exact lookup of a bare, lower-case host name.
    pub fn lookup(host: &str) -> Option<IbmHost> {
        HOSTS
            .iter()
            .find(|(name, _, _)| *name == host)
            .map(|&(name, region, network)| IbmHost {
                name,
                region,
                network,
            })
    }

    /// The canonical host name, e.g. `us.icr.io`: the store key for this host.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// The region it serves.
    pub fn region(self) -> Region {
        self.region
    }

    /// Public, private or legacy name.
    pub fn network(self) -> Network {
        self.network
    }

    /// True for the global registry `icr.io`.
    pub fn is_global(self) -> bool {
        self.name == GLOBAL_HOST
    }
}

impl fmt::Display for IbmHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// What a `ServerURL` names: an IBM host, or any other registry, for which
/// the helper is a plain credential store. Each is also the key its
/// credential is stored under: the canonical host for IBM hosts, the exact
/// string the client sent for every other registry (as the reference
/// helpers do, so each client's store-then-get round-trips).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registry<'a> {
    /// One of IBM's hosts.
    Ibm(IbmHost),
    /// Anything else, as the client sent it.
    Other(&'a str),
}

impl<'a> Registry<'a> {
    /// Sorts a `ServerURL`.
    pub fn parse(server_url: &'a str) -> Registry<'a> {
        match IbmHost::parse(server_url) {
            Some(host) => Registry::Ibm(host),
            None => Registry::Other(server_url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_entry_parses_to_itself_in_every_client_form() {
        for &(name, region, network) in HOSTS {
            let forms = [
                name.to_string(),
                name.to_ascii_uppercase(),
                format!("https://{name}"),
                format!("http://{name}"),
                format!("https://{name}/"),
                format!("https://{name}/v2/"),
                format!("{name}:443"),
                format!("https://{name}:443/v1/"),
                format!("{name}/ns/repo"),
                format!("  {name}\n"),
            ];
            for form in forms {
                let host = IbmHost::parse(&form).unwrap_or_else(|| panic!("{form:?}"));
                assert_eq!(
                    (host.name(), host.region(), host.network()),
                    (name, region, network)
                );
                assert_eq!(Registry::parse(&form), Registry::Ibm(host));
            }
        }
    }

    #[test]
    fn the_table_has_thirteen_documented_regions_plus_fr2() {
        let mut regions: Vec<&str> = HOSTS.iter().map(|h| h.1.as_str()).collect();
        regions.dedup();
        assert_eq!(regions.len(), 14);
        assert_eq!(HOSTS.iter().filter(|h| h.2 == Network::Legacy).count(), 5);
        assert!(HOSTS
            .iter()
            .filter(|h| h.2 == Network::Private)
            .all(|h| h.0.starts_with("private.")));
    }

    #[test]
    fn hostile_and_foreign_names_are_not_ibm() {
        for s in [
            "cp.icr.io",
            "us.icr.io.evil.example",
            "evil.example/us.icr.io",
            "us.icr.io@evil.example",
            "xus.icr.io",
            "us.icr.io:5443",
            "us.icr.io:",
            "icr.io.",
            "foo.icr.io",
            "https://index.docker.io/v1/",
            "localhost:5000",
            "ghcr.io",
            "",
            "ftp://us.icr.io",
        ] {
            assert_eq!(IbmHost::parse(s), None, "{s:?}");
            assert_eq!(Registry::parse(s), Registry::Other(s));
        }
    }

    #[test]
    fn the_readme_lists_every_host_with_its_region() {
        let readme = include_str!("../README.md");
        for &(name, region, _) in HOSTS {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| {region} |")))
                .unwrap_or_else(|| panic!("README has no row for {region}"));
            assert!(
                row.contains(&format!("`{name}`")),
                "README row for {region} lacks {name}"
            );
        }
    }

    #[test]
    fn global_is_icr_io() {
        let global = IbmHost::parse("ICR.IO").unwrap();
        assert!(global.is_global());
        assert_eq!(global.name(), GLOBAL_HOST);
        assert!(!IbmHost::parse("us.icr.io").unwrap().is_global());
    }
}
