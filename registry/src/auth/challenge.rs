//! `WWW-Authenticate` challenges (RFC 7235), access scopes, and the scheme a registry asks
//! for. Pure functions, so they can be unit- and property-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Scheme, lowercased (`bearer`, `basic`, ...).
    pub scheme: String,
    /// Parameters in order, names lowercased. A token68 value is kept under the name `""`.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn peek_at(&self, n: usize) -> Option<u8> {
        self.s.get(self.i + n).copied()
    }
    fn bump(&mut self) {
        if self.i < self.s.len() {
            self.i += 1;
        }
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }
    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n' | b',')) {
            self.i += 1;
        }
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> String {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        String::from_utf8_lossy(self.s.get(start..self.i).unwrap_or_default()).into_owned()
    }
    /// A quoted string starting at `"`; backslash escapes the next byte; an unterminated
    /// string runs to the end.
    fn quoted(&mut self) -> String {
        self.bump(); // the opening quote
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    /// Skip to just past the next comma (or the end): recovery from junk.
    fn skip_past_comma(&mut self) {
        while let Some(b) = self.peek() {
            self.i += 1;
            if b == b',' {
                break;
            }
        }
    }
}

/// Parse every challenge in a `WWW-Authenticate` header value (RFC 7235): several
/// challenges may share one header, parameters may be quoted with commas inside, and junk
/// is skipped rather than trusted. Never panics.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut c = Cursor {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        c.skip_ws_and_commas();
        if c.peek().is_none() {
            break;
        }
        let scheme = c.take_while(is_tchar);
        if scheme.is_empty() {
            // Not a challenge start: skip this element.
            c.skip_past_comma();
            continue;
        }
        let mut ch = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        let mut first = true;
        loop {
            c.skip_ws();
            if first {
                first = false;
                if let Some(t) = token68(&mut c) {
                    ch.params.push((String::new(), t));
                    break;
                }
            }
            let save = c.i;
            let name = c.take_while(is_tchar);
            if name.is_empty() {
                match c.peek() {
                    // An empty list element: `a=b, , c=d`.
                    Some(b',') => {
                        c.bump();
                        continue;
                    }
                    None => break,
                    // Junk where a parameter should be.
                    Some(_) => {
                        c.skip_past_comma();
                        continue;
                    }
                }
            }
            c.skip_ws();
            if c.peek() != Some(b'=') {
                // A token not followed by `=` starts the next challenge.
                c.i = save;
                break;
            }
            c.bump();
            c.skip_ws();
            let value = if c.peek() == Some(b'"') {
                c.quoted()
            } else {
                // Lenient: unquoted URLs (`realm=https://...`) are seen in the wild.
                c.take_while(|b| !matches!(b, b',' | b' ' | b'\t' | b'\r' | b'\n' | b'"'))
            };
            ch.params.push((name.to_ascii_lowercase(), value));
            c.skip_ws();
            match c.peek() {
                Some(b',') => c.bump(),
                None => break,
                // The next challenge's scheme, or junk (handled next time round).
                Some(_) => {
                    if !c.peek().is_some_and(is_tchar) {
                        c.skip_past_comma();
                    }
                }
            }
        }
        out.push(ch);
    }
    out
}

/// A token68 credential (`Negotiate abc/+==`): token68 characters, optional `=` padding,
/// then the end or a comma. `None` (cursor untouched) when what follows is `name=value`.
fn token68(c: &mut Cursor<'_>) -> Option<String> {
    let mut n = 0;
    while c.peek_at(n).is_some_and(is_token68_char) {
        n += 1;
    }
    if n == 0 {
        return None;
    }
    let mut pad = 0;
    while c.peek_at(n + pad) == Some(b'=') {
        pad += 1;
    }
    let mut k = n + pad;
    while matches!(c.peek_at(k), Some(b' ' | b'\t')) {
        k += 1;
    }
    if !matches!(c.peek_at(k), None | Some(b',')) {
        return None;
    }
    let start = c.i;
    c.i += n + pad;
    Some(String::from_utf8_lossy(c.s.get(start..c.i).unwrap_or_default()).into_owned())
}

/// One access scope: `repository:library/alpine:pull,push`, `registry:catalog:*`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    /// `repository`, `registry`, ...
    pub resource_type: String,
    /// The resource name (repository path, `catalog`).
    pub name: String,
    /// Actions, sorted.
    pub actions: BTreeSet<String>,
}

impl Scope {
    /// `repository:<repo>:pull`.
    pub fn pull(repo: &str) -> Scope {
        Scope::new("repository", repo, &["pull"])
    }

    /// `repository:<repo>:pull,push`.
    pub fn push(repo: &str) -> Scope {
        Scope::new("repository", repo, &["pull", "push"])
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Scope {
        Scope::new("registry", "catalog", &["*"])
    }

    /// A scope from parts.
    pub fn new(resource_type: &str, name: &str, actions: &[&str]) -> Scope {
        Scope {
            resource_type: resource_type.to_string(),
            name: name.to_string(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Parse the space-separated scopes of a challenge's `scope` parameter. Names may
    /// contain `:` (a registry host with a port), so the type is the first field and the
    /// actions the last.
    pub fn parse_list(s: &str) -> Vec<Scope> {
        s.split_whitespace()
            .filter_map(|one| {
                let (rtype, rest) = one.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                if rtype.is_empty() || name.is_empty() {
                    return None;
                }
                Some(Scope {
                    resource_type: rtype.to_string(),
                    name: name.to_string(),
                    actions: actions
                        .split(',')
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                        .collect(),
                })
            })
            .collect()
    }

    /// Whether a token granted for `self` also covers `other`.
    pub fn covers(&self, other: &Scope) -> bool {
        self.resource_type == other.resource_type
            && self.name == other.name
            && (self.actions.contains("*") || other.actions.is_subset(&self.actions))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.resource_type, self.name)?;
        for (i, a) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(a)?;
        }
        Ok(())
    }
}

/// Merge scopes: one entry per resource with the union of actions, sorted.
pub fn merge_scopes(scopes: impl IntoIterator<Item = Scope>) -> Vec<Scope> {
    let mut map: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for s in scopes {
        map.entry((s.resource_type, s.name))
            .or_default()
            .extend(s.actions);
    }
    map.into_iter()
        .map(|((resource_type, name), actions)| Scope {
            resource_type,
            name,
            actions,
        })
        .collect()
}

/// How a registry wants to be authenticated, learned from its first 401.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Send `Authorization: Basic` with the credentials on every request.
    Basic,
    /// Get tokens from `realm`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter to pass on.
        service: Option<String>,
    },
}

/// Choose the scheme to use from a response's challenges: Bearer first, then Basic. Also
/// returns the scopes the Bearer challenge asks for, and its `error` parameter.
pub fn choose_scheme(challenges: &[Challenge]) -> Option<(Scheme, Vec<Scope>, Option<String>)> {
    if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer") {
        let realm = b.param("realm")?.to_string();
        let service = b.param("service").map(str::to_string);
        let scopes = b.param("scope").map(Scope::parse_list).unwrap_or_default();
        let error = b.param("error").map(str::to_string);
        return Some((Scheme::Bearer { realm, service }, scopes, error));
    }
    if challenges.iter().any(|c| c.scheme == "basic") {
        return Some((Scheme::Basic, Vec::new(), None));
    }
    None
}

/// The value of an `Authorization: Basic` header.
pub fn basic_header(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn distribution_bearer() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:library/alpine:pull,push")
        );
        let (scheme, scopes, err) = choose_scheme(&c).unwrap();
        assert_eq!(
            scheme,
            Scheme::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            }
        );
        assert_eq!(scopes, vec![Scope::push("library/alpine")]);
        assert_eq!(err, None);
    }

    #[test]
    fn several_challenges_and_odd_spacing() {
        let h = r#"Basic realm="a, b", Bearer realm = "https://t/x?y=1,2" , service=reg,error="insufficient_scope", Negotiate abc/d==, Digest"#;
        let c = parse_challenges(h);
        let schemes: Vec<&str> = c.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["basic", "bearer", "negotiate", "digest"], "{c:?}");
        assert_eq!(c[0].param("realm"), Some("a, b"));
        assert_eq!(c[1].param("realm"), Some("https://t/x?y=1,2"));
        assert_eq!(c[1].param("service"), Some("reg"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
        assert_eq!(c[2].param(""), Some("abc/d=="));
        assert!(c[3].params.is_empty());
        // Bearer wins over Basic.
        let (scheme, _, err) = choose_scheme(&c).unwrap();
        assert!(matches!(scheme, Scheme::Bearer { .. }));
        assert_eq!(err.as_deref(), Some("insufficient_scope"));
    }

    #[test]
    fn basic_and_escapes_and_junk() {
        let c = parse_challenges(r#"basic realm="say \"hi\"""#);
        assert_eq!(c[0].param("realm"), Some(r#"say "hi""#));
        assert_eq!(choose_scheme(&c).unwrap().0, Scheme::Basic);
        let c = parse_challenges(r#"Bearer realm="unterminated"#);
        assert_eq!(c[0].param("realm"), Some("unterminated"));
        assert!(parse_challenges("").is_empty());
        assert!(parse_challenges(" , ,, ").is_empty());
        let c = parse_challenges(r#"Bearer ,, realm="r",,service="s" ,"#);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].param("service"), Some("s"));
        // A Bearer challenge without a realm is unusable.
        assert_eq!(choose_scheme(&parse_challenges("Bearer service=x")), None);
        let c = parse_challenges(r#"Bearer realm="r" @@@ , service="s""#);
        assert_eq!(c[0].param("service"), Some("s"), "{c:?}");
    }

    #[test]
    fn scopes() {
        let s = Scope::parse_list(
            "repository:a/b:pull repository:host:5000/c:pull,push registry:catalog:* bad",
        );
        assert_eq!(
            s,
            vec![
                Scope::pull("a/b"),
                Scope::push("host:5000/c"),
                Scope::catalog()
            ]
        );
        assert_eq!(s[1].to_string(), "repository:host:5000/c:pull,push");
        assert!(Scope::push("r").covers(&Scope::pull("r")));
        assert!(!Scope::pull("r").covers(&Scope::push("r")));
        assert!(!Scope::push("r").covers(&Scope::pull("s")));
        let merged = merge_scopes([Scope::pull("r"), Scope::push("r"), Scope::pull("a")]);
        assert_eq!(merged, vec![Scope::pull("a"), Scope::push("r")]);
    }

    #[test]
    fn basic_header_value() {
        assert_eq!(basic_header("u", "p"), "Basic dTpw");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = parse_challenges(&s);
        }

        #[test]
        fn parse_never_panics_on_header_like_input(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("Bearer".to_string()), Just("Basic".to_string()), Just("realm".to_string()),
                    Just("=".to_string()), Just("\"".to_string()), Just(",".to_string()),
                    Just(" ".to_string()), Just("\\".to_string()), Just("==".to_string()),
                    "[a-z/+:]{1,5}".prop_map(|s| s),
                ],
                0..40,
            )
        ) {
            let s: String = parts.concat();
            let _ = parse_challenges(&s);
        }

        #[test]
        fn quoted_values_roundtrip(v in "[ -~]{0,40}") {
            let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
            let h = format!("Bearer realm=\"{escaped}\",service=\"s\"");
            let c = parse_challenges(&h);
            prop_assert_eq!(c.len(), 1);
            prop_assert_eq!(c[0].param("realm"), Some(v.as_str()));
            prop_assert_eq!(c[0].param("service"), Some("s"));
        }
    }
}
