use super::*;

#[derive(Default)]
struct Record {
    numbers: Vec<(Vec<Seg>, u64)>,
    strings: Vec<(Vec<Seg>, String)>,
}

impl Visitor for Record {
    fn number(&mut self, path: &[Seg], n: Number) {
        self.numbers.push((path.to_vec(), n.value));
    }
    fn wants_string(&self, path: &[Seg]) -> bool {
        path.last() == Some(&Seg::Key(Key::Type))
    }
    fn string(&mut self, path: &[Seg], value: &[u8], _truncated: bool) {
        self.strings.push((path.to_vec(), String::from_utf8_lossy(value).into_owned()));
    }
}

fn scan(doc: &str) -> (Finish, Record) {
    let mut s = JsonScanner::new();
    let mut r = Record::default();
    s.feed(doc.as_bytes(), &mut r);
    (s.finish(&mut r), r)
}

#[test]
fn numbers_and_wanted_strings_are_reported_with_their_paths() {
    let (f, r) = scan(r#"{"usage": {"input_tokens": 5}, "content": [{"type": "tool_use", "x": "skip"}], "id": 7}"#);
    assert_eq!(f, Finish::Complete);
    assert_eq!(
        r.numbers,
        vec![(vec![Seg::Key(Key::Usage), Seg::Key(Key::InputTokens)], 5), (vec![Seg::Key(Key::Id)], 7)]
    );
    assert_eq!(r.strings, vec![(vec![Seg::Key(Key::Content), Seg::Elem, Seg::Key(Key::Type)], "tool_use".to_string())]);
}

#[test]
fn deep_values_are_validated_but_not_reported() {
    let (f, r) = scan(r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":1}}}}}}}}}}"#);
    assert_eq!(f, Finish::Complete);
    assert!(r.numbers.is_empty());
}

#[test]
fn structure_errors_are_malformed() {
    for doc in [r#"{"a":1"#, r#"{"a" 1}"#, r#"[1,]x"#, r#"{"a":tru}"#, "]", r#"{"a":1}}"#, "\u{1}"] {
        assert_eq!(scan(doc).0, Finish::Malformed, "{doc}");
    }
    assert_eq!(scan("  \n").0, Finish::Empty);
}

/// Everything a visitor can observe, with strings wanted at a few paths (as the usage scanners
/// want `type`, `model` and error fields).
#[derive(Debug, Default, PartialEq)]
struct Observed {
    numbers: Vec<(Vec<Seg>, Number)>,
    strings: Vec<(Vec<Seg>, Vec<u8>, bool)>,
}

impl Visitor for Observed {
    fn number(&mut self, path: &[Seg], n: Number) {
        self.numbers.push((path.to_vec(), n));
    }
    fn wants_string(&self, path: &[Seg]) -> bool {
        matches!(path.last(), Some(Seg::Key(Key::Type | Key::Model | Key::Id)) | Some(Seg::Elem))
    }
    fn string(&mut self, path: &[Seg], value: &[u8], truncated: bool) {
        self.strings.push((path.to_vec(), value.to_vec(), truncated));
    }
}

/// The scanner defined a byte at a time: every byte stepped, as `feed` was before its runs.
fn scan_bytewise(doc: &[u8]) -> (Finish, Observed) {
    let mut s = JsonScanner::new();
    let mut o = Observed::default();
    for b in doc {
        if s.failed {
            break;
        }
        if let [b] = s.skip_bom(std::slice::from_ref(b)) {
            s.step(*b, &mut o);
        }
    }
    (s.finish(&mut o), o)
}

fn scan_parts(parts: &[&[u8]]) -> (Finish, Observed) {
    let mut s = JsonScanner::new();
    let mut o = Observed::default();
    for p in parts {
        s.feed(p, &mut o);
    }
    (s.finish(&mut o), o)
}

/// `feed` in any chunks observes what stepping byte by byte does.
fn runs_agree_with_steps(doc: &[u8]) {
    let reference = scan_bytewise(doc);
    assert_eq!(scan_parts(&[doc]), reference, "whole: {}", String::from_utf8_lossy(doc));
    for cut in 0..=doc.len() {
        let (a, b) = doc.split_at(cut);
        assert_eq!(scan_parts(&[a, b]), reference, "split at {cut}: {}", String::from_utf8_lossy(doc));
    }
    let bytes: Vec<&[u8]> = doc.chunks(1).collect();
    assert_eq!(scan_parts(&bytes), reference, "byte by byte");
}

const LONG: &str = "a-string-longer-than-the-sixty-four-bytes-a-key-or-wanted-value-keeps";

#[test]
fn reading_a_span_at_a_time_observes_what_stepping_byte_by_byte_does() {
    let docs = [
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1763900000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"tok"},"finish_reason":null}]}"#.to_string(),
        r#"{"type":"a\"b","model":"x\\y\u0041","id":"\"","ty\u0070e":"k","x\\":1}"#.to_string(),
        format!(r#"{{"model":"{LONG}","{LONG}":{{"type":"t"}},"type":"{LONG}{LONG}"}}"#),
        r#"[1,-2,3.5,1e5,-0,18446744073709551615,18446744073709551616,"s",true,false,null,[],{}]"#.to_string(),
        " \t\r\n{ \"type\" : \"x\" , \"n\" :\n-12 } \n".to_string(),
        "\u{feff}{\"type\":\"bom\"}".to_string(),
        "7".to_string(),
        r#""only a string""#.to_string(),
        r#"{"a":[{"b":[{"c":[{"d":[{"e":{"f":{"g":{"type":"deep","n":9}}}}]}]}]}]}"#.to_string(),
    ];
    // Wanted strings and keys either side of the buffer's size.
    let edges = (STRING_CAP - 1..=STRING_CAP + 1).map(|n| {
        let s = "k".repeat(n);
        format!(r#"{{"type":"{s}","{s}":1,"id":"{s}\n"}}"#)
    });
    for doc in docs.iter().cloned().chain(edges) {
        runs_agree_with_steps(doc.as_bytes());
    }
    // Malformed documents fail at the same byte, having reported the same values before it.
    for doc in
        [r#"{"a":1"#, r#"{"a" 1}"#, r#"[1,]x"#, r#"{"type":tru}"#, r#"{"n":12x}"#, r#"{"s":"\"#, "]", "\u{ef}\u{bb}x"]
    {
        runs_agree_with_steps(doc.as_bytes());
    }
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/responses");
    for name in ["openai-chat-tools.json", "anthropic-messages-tools.json", "openai-responses-tools.json"] {
        runs_agree_with_steps(&std::fs::read(fixtures.join(name)).unwrap());
    }
}

#[test]
fn random_token_soup_is_read_alike_by_runs_and_steps() {
    const PIECES: [&str; 24] = [
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        " ",
        "\"type\"",
        "\"model\"",
        "\"id\"",
        "\"x\\\"y\"",
        "\"\\\\\"",
        "\"\"",
        "12",
        "-3.5e2",
        "0",
        "null",
        "true",
        "fals",
        "\"usage\"",
        "{\"input_tokens\":",
        "\n",
        "\"é\"",
        "9999999999999999999999",
    ];
    let mut rng = crate::testkit::Xorshift::new(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3_000 {
        let mut doc = String::new();
        for _ in 0..rng.below(24) {
            doc.push_str(PIECES[rng.below(PIECES.len() as u64) as usize]);
        }
        runs_agree_with_steps(doc.as_bytes());
    }
}
