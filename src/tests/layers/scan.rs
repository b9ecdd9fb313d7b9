//! Reading Rust source for crate-level paths: code is split from comments and string
//! literals, `crate::` paths (single or grouped) are found in code and comments, and
//! `super::` chains are followed (through inline `mod name { … }` blocks) to see whether
//! they climb to the crate root.

use std::path::Path;

/// Source text split into code (string literal contents blanked, comments removed) and
/// comments (the rest blanked); both keep every newline, so offsets map to lines.
fn split_source(src: &str) -> (String, String) {
    let b = src.as_bytes();
    let (mut code, mut comments) = (Vec::with_capacity(b.len()), Vec::with_capacity(b.len()));
    let blank = |c: u8| if c == b'\n' { b'\n' } else { b' ' };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        // Line comment.
        if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                code.push(b' ');
                comments.push(b[i]);
                i += 1;
            }
            continue;
        }
        // Block comment, nested.
        if c == b'/' && next == Some(b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    if depth == 0 {
                        code.extend([b' ', b' ']);
                        comments.extend([b'*', b'/']);
                        i += 2;
                        break;
                    }
                }
                code.push(blank(b[i]));
                comments.push(b[i]);
                i += 1;
            }
            continue;
        }
        // Raw string: r"…", r#"…"#, br"…".
        let raw_start = if c == b'r' && matches!(next, Some(b'"' | b'#')) {
            Some(i + 1)
        } else if c == b'b' && next == Some(b'r') && matches!(b.get(i + 2), Some(b'"' | b'#')) {
            Some(i + 2)
        } else {
            None
        };
        let after_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if let Some(mut j) = raw_start.filter(|_| !after_ident) {
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) == Some(&b'"') {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let end = b[j + 1..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |p| j + 1 + p + close.len());
                for &x in &b[i..end] {
                    code.push(blank(x));
                    comments.push(blank(x));
                }
                i = end;
                continue;
            }
        }
        // String.
        if c == b'"' {
            code.push(b'"');
            comments.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                let step = if b[i] == b'\\' { 2 } else { 1 };
                for &x in &b[i..(i + step).min(b.len())] {
                    code.push(blank(x));
                    comments.push(blank(x));
                }
                i += step;
            }
            code.push(b'"');
            comments.push(b' ');
            i += 1;
            continue;
        }
        // Char literal (not a lifetime): 'x', '\n', '\u{..}', '{'.
        if c == b'\'' {
            let len = if next == Some(b'\\') {
                b[i + 2..].iter().position(|&x| x == b'\'').map(|p| p + 3)
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(ch + 2)
            };
            if let Some(len) = len {
                code.extend(std::iter::repeat_n(b' ', len));
                comments.extend(std::iter::repeat_n(b' ', len));
                i += len;
                continue;
            }
        }
        code.push(c);
        comments.push(blank(c));
        i += 1;
    }
    let text = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
    (text(code), text(comments))
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The identifier starting at `i` (after spaces): where it starts, the identifier, and
/// where it ends.
fn ident_at(b: &[u8], mut i: usize) -> (usize, String, usize) {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    while i < b.len() && is_ident(b[i]) {
        i += 1;
    }
    (start, String::from_utf8_lossy(&b[start..i]).into_owned(), i)
}

/// After `::` at `i`: the top-level names a path names there (one, or each of a group;
/// `*` for a glob), with their offsets.
fn names_after(b: &[u8], mut i: usize) -> Vec<(usize, String)> {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    match b.get(i) {
        Some(b'{') => {
            let (mut depth, mut names, mut expect) = (0, Vec::new(), true);
            while i < b.len() {
                match b[i] {
                    b'{' => {
                        depth += 1;
                        expect = depth == 1;
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' if depth == 1 => expect = true,
                    b'*' if depth == 1 && expect => {
                        names.push((i, "*".to_string()));
                        expect = false;
                    }
                    c if is_ident(c) && depth == 1 && expect => {
                        let (start, name, end) = ident_at(b, i);
                        names.push((start, name));
                        expect = false;
                        i = end;
                        continue;
                    }
                    _ => {}
                }
                i += 1;
            }
            names
        }
        Some(b'*') => vec![(i, "*".to_string())],
        _ => {
            let (start, name, _) = ident_at(b, i);
            vec![(start, name)]
        }
    }
}

/// The module path of a file under `src/`: `src/a/b.rs` → `[a, b]`.
pub(super) fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.last_mut() {
        *last = last.trim_end_matches(".rs").to_string();
    }
    parts
}

/// Every crate-level module named by `src` (the file `rel`, relative to `src/`), with its
/// line.
pub(super) fn crate_paths(rel: &Path, src: &str) -> Vec<(usize, String)> {
    let (code, comments) = split_source(src);
    let line_of = |text: &str, at: usize| text[..at].matches('\n').count() + 1;
    let mut found = Vec::new();
    let file_depth = module_path(rel).len();
    let b = code.as_bytes();
    // Inline `mod name {` blocks: the brace depth at which each opened.
    let (mut depth, mut mods): (usize, Vec<usize>) = (0, Vec::new());
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == b'$');
        match b[i] {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if mods.last() == Some(&depth) {
                    mods.pop();
                }
            }
            _ if boundary && b[i..].starts_with(b"mod") => {
                let (_, name, end) = ident_at(b, i + 3);
                let mut j = end;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if i + 3 < b.len()
                    && !is_ident(b[i + 3])
                    && !name.is_empty()
                    && b.get(j) == Some(&b'{')
                {
                    mods.push(depth);
                    depth += 1;
                    i = j + 1;
                    continue;
                }
            }
            _ if boundary && b[i..].starts_with(b"crate") && !b[..i].ends_with(b"::") => {
                let mut j = i + 5;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if b[j..].starts_with(b"::") {
                    for (at, name) in names_after(b, j + 2) {
                        found.push((line_of(&code, at), name));
                    }
                    i = j + 2;
                    continue;
                }
            }
            _ if boundary && b[i..].starts_with(b"super") && !b[..i].ends_with(b"::") => {
                let (mut hops, mut j) = (0, i);
                loop {
                    let (_, word, end) = ident_at(b, j);
                    let mut k = end;
                    while k < b.len() && b[k].is_ascii_whitespace() {
                        k += 1;
                    }
                    if word != "super" || !b[k..].starts_with(b"::") {
                        break;
                    }
                    hops += 1;
                    j = k + 2;
                }
                if hops > 0 && hops == file_depth + mods.len() {
                    for (at, name) in names_after(b, j) {
                        found.push((line_of(&code, at), name));
                    }
                }
                if hops > 0 {
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    // Comments: `crate::name` (doc links and prose).
    let c = comments.as_bytes();
    for (at, _) in comments.match_indices("crate::") {
        if at > 0 && (is_ident(c[at - 1]) || c[at - 1] == b'$') {
            continue;
        }
        for (at, name) in names_after(c, at + 7) {
            found.push((line_of(&comments, at), name));
        }
    }
    found
}
