//! STIX patterns from 2.0 to 2.1: the grammar is the same; only object
//! paths that name renamed observable properties, and the `ssdeep` hash
//! name, change. String literals are copied untouched.

/// Rewrites the object paths of a 2.0 pattern. `renames` holds
/// (object type, 2.0 property, 2.1 property).
pub fn step(pattern: &str, renames: &[(&str, &str, &str)]) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut token = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if is_path_char(c) {
            token.push(c);
            continue;
        }
        let after_dot = token.ends_with('.');
        out.push_str(&rename_path(&token, renames));
        token.clear();
        if c != '\'' {
            out.push(c);
            continue;
        }
        // A quote right after `.` opens a quoted path component, such as
        // `hashes.'SHA-256'`; anywhere else it opens a string literal.
        let mut quoted = String::new();
        while let Some(q) = chars.next() {
            if q == '\\' && !after_dot {
                quoted.push(q);
                quoted.extend(chars.next());
                continue;
            }
            if q == '\'' {
                break;
            }
            quoted.push(q);
        }
        let quoted = if after_dot && quoted == "ssdeep" {
            "SSDEEP".to_string()
        } else {
            quoted
        };
        out.push('\'');
        out.push_str(&quoted);
        out.push('\'');
    }
    out.push_str(&rename_path(&token, renames));
    out
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.')
}

/// `file:created` → `file:ctime`; `file:hashes.ssdeep` → `file:hashes.SSDEEP`.
fn rename_path(token: &str, renames: &[(&str, &str, &str)]) -> String {
    let Some((kind, path)) = token.split_once(':') else {
        return token.to_string();
    };
    let mut parts: Vec<&str> = path.split('.').collect();
    if let Some(first) = parts.first_mut()
        && let Some((_, _, to)) = renames
            .iter()
            .find(|(of, from, _)| *of == kind && from == first)
    {
        *first = to;
    }
    for pair in 1..parts.len() {
        if parts[pair - 1] == "hashes" && parts[pair] == "ssdeep" {
            parts[pair] = "SSDEEP";
        }
    }
    format!("{kind}:{}", parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENAMES: &[(&str, &str, &str)] = &[
        ("file", "created", "ctime"),
        ("process", "binary_ref", "image_ref"),
    ];

    #[test]
    fn renames_object_paths_and_leaves_literals_alone() {
        let cases = [
            (
                "[file:created > t'2016-01-01T00:00:00Z']",
                "[file:ctime > t'2016-01-01T00:00:00Z']",
            ),
            (
                "[process:binary_ref.name = 'file:created'] AND [file:name = 'x']",
                "[process:image_ref.name = 'file:created'] AND [file:name = 'x']",
            ),
            (
                "[file:hashes.ssdeep = 'a'] OR [file:hashes.'ssdeep' = 'b']",
                "[file:hashes.SSDEEP = 'a'] OR [file:hashes.'SSDEEP' = 'b']",
            ),
            (
                "[file:hashes.'SHA-256' = 'it\\'s'] REPEATS 5 TIMES",
                "[file:hashes.'SHA-256' = 'it\\'s'] REPEATS 5 TIMES",
            ),
            ("[file:created_by = 1]", "[file:created_by = 1]"),
            (
                "[ipv4-addr:value = '198.51.100.1/32']",
                "[ipv4-addr:value = '198.51.100.1/32']",
            ),
        ];
        for (before, after) in cases {
            assert_eq!(step(before, RENAMES), after, "{before}");
        }
    }
}
