//! `Link` header pagination (RFC 8288), as `_catalog` and `tags/list` use it:
//! `Link: </v2/_catalog?last=b&n=1000>; rel="next"`.

use reqwest::header::{HeaderMap, LINK};

/// The target of the `rel="next"` link, if any, exactly as written (usually a path with a
/// query; it may be an absolute URL).
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_links)
        .find_map(|link| parse_link(link).filter(|(_, rels)| rels.iter().any(|r| r.eq_ignore_ascii_case("next"))).map(|(target, _)| target))
}

/// Splits a header value into link-values at the commas that are outside `<...>` and quotes.
fn split_links(value: &str) -> Vec<&str> {
    let (mut parts, mut start, mut in_angle, mut in_quote) = (Vec::new(), 0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            '"' if !in_angle => in_quote = !in_quote,
            ',' if !in_angle && !in_quote => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// `<target>; rel="next prev"; title=x` → (target, ["next", "prev"]).
fn parse_link(link: &str) -> Option<(String, Vec<String>)> {
    let link = link.trim();
    let rest = link.strip_prefix('<')?;
    let end = rest.find('>')?;
    let target = rest[..end].to_string();
    let rels = rest[end + 1..]
        .split(';')
        .filter_map(|param| param.split_once('='))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("rel"))
        .flat_map(|(_, v)| v.trim().trim_matches('"').split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    Some((target, rels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(LINK, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn finds_the_registry_s_next_page() {
        assert_eq!(next_link(&headers(&[r#"</v2/_catalog?last=b&n=1000>; rel="next""#])).as_deref(), Some("/v2/_catalog?last=b&n=1000"));
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn tolerates_other_spellings() {
        // Unquoted rel, extra params, several links in one value or several headers.
        assert_eq!(next_link(&headers(&["</v2/x/tags/list?last=v2>;rel=next"])).as_deref(), Some("/v2/x/tags/list?last=v2"));
        let both = r#"</v2/_catalog?last=a>; rel="prev", <https://r.example/v2/_catalog?last=c,d&n=2>; title="x, y"; rel="next""#;
        assert_eq!(next_link(&headers(&[both])).as_deref(), Some("https://r.example/v2/_catalog?last=c,d&n=2"));
        assert_eq!(next_link(&headers(&[r#"</a>; rel="prev""#, r#"</b>; rel="last next""#])).as_deref(), Some("/b"));
    }

    #[test]
    fn ignores_links_that_are_not_next() {
        assert_eq!(next_link(&headers(&[r#"</v2/_catalog?last=a>; rel="prev""#])), None);
        assert_eq!(next_link(&headers(&["garbage"])), None);
    }
}
