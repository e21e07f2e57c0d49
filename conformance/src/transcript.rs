//! The record of one run of a call sequence: one line per PKCS#11 call
//! (function, arguments that matter, CK_RV, outputs), with every value that
//! legitimately differs between two modules replaced by a stable name.

use std::collections::HashMap;
use std::io::Write;

use cryptoki_sys::*;

/// Prefix of transcript lines on a child's stdout.
pub const LINE_PREFIX: &str = "@@T ";
/// Printed by a child whose call sequence ran to its end.
pub const END_MARKER: &str = "@@END";

/// Names handles by the order the module handed them out (`s1`, `o4`), so
/// two modules with different handle values give equal transcripts.
#[derive(Default)]
struct HandleNames {
    prefix: &'static str,
    names: HashMap<CK_ULONG, String>,
    next: usize,
}

impl HandleNames {
    fn new(prefix: &'static str) -> Self {
        HandleNames {
            prefix,
            ..Default::default()
        }
    }

    /// A new name for a handle just returned by a creating call (a value
    /// the module may have reused after a destroy gets a new name).
    fn fresh(&mut self, value: CK_ULONG) -> String {
        self.next += 1;
        let name = format!("{}{}", self.prefix, self.next);
        self.names.insert(value, name.clone());
        name
    }

    /// The name of a handle passed in or listed; fixed invalid values keep
    /// their (identical on both sides) number.
    fn get(&self, value: CK_ULONG) -> String {
        self.names
            .get(&value)
            .cloned()
            .unwrap_or_else(|| format!("{}?{value:#x}", self.prefix))
    }

    fn get_or_fresh(&mut self, value: CK_ULONG) -> String {
        match self.names.get(&value) {
            Some(name) => name.clone(),
            None => self.fresh(value),
        }
    }
}

pub struct Transcript {
    lines: Vec<String>,
    echo: bool,
    sessions: HandleNames,
    objects: HandleNames,
    slots: Vec<CK_SLOT_ID>,
}

impl Transcript {
    /// `echo`: print each line (with [`LINE_PREFIX`]) as it is recorded, so a
    /// parent sees the transcript up to a crash.
    pub fn new(echo: bool) -> Self {
        Transcript {
            lines: Vec::new(),
            echo,
            sessions: HandleNames::new("s"),
            objects: HandleNames::new("o"),
            slots: Vec::new(),
        }
    }

    pub fn record(&mut self, line: impl Into<String>) {
        let line = line.into();
        if self.echo {
            // Flushed per line, so a parent sees everything up to a crash.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{LINE_PREFIX}{line}");
            let _ = out.flush();
        }
        self.lines.push(line);
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    pub fn new_session(&mut self, h: CK_SESSION_HANDLE) -> String {
        self.sessions.fresh(h)
    }

    pub fn session(&self, h: CK_SESSION_HANDLE) -> String {
        self.sessions.get(h)
    }

    pub fn new_object(&mut self, h: CK_OBJECT_HANDLE) -> String {
        self.objects.fresh(h)
    }

    pub fn object(&self, h: CK_OBJECT_HANDLE) -> String {
        self.objects.get(h)
    }

    pub fn found_object(&mut self, h: CK_OBJECT_HANDLE) -> String {
        self.objects.get_or_fresh(h)
    }

    /// Remembers the slot list so slots are named by index (`slot0`).
    pub fn set_slots(&mut self, slots: &[CK_SLOT_ID]) {
        self.slots = slots.to_vec();
    }

    pub fn slot(&self, id: CK_SLOT_ID) -> String {
        match self.slots.iter().position(|s| *s == id) {
            Some(i) => format!("slot{i}"),
            None => format!("slot?{id:#x}"),
        }
    }

    /// Replaces slot ids written in hex or decimal inside free text (SoftHSM
    /// puts the id in its slot description) by the slot's name.
    pub fn scrub_slot_ids(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (i, id) in self.slots.iter().enumerate() {
            out = out.replace(&format!("{id:#x}"), &format!("<slot{i}>"));
            out = out.replace(&format!("{id:#X}"), &format!("<slot{i}>"));
        }
        out
    }
}

/// The transcript lines and whether the end marker was seen, from a child's
/// stdout. Markers are found anywhere in a line: libtest prints
/// `test NAME ... ` without a newline before the test's own output.
pub fn parse(stdout: &str) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut complete = false;
    for line in stdout.lines() {
        if let Some(at) = line.find(LINE_PREFIX) {
            lines.push(line[at + LINE_PREFIX.len()..].to_owned());
        } else if line.trim_end().ends_with(END_MARKER) {
            complete = true;
        }
    }
    (lines, complete)
}

/// A line diff of `a` (`-`) against `b` (`+`) with three lines of context,
/// or `None` when they are equal.
pub fn diff(a: &[String], b: &[String]) -> Option<String> {
    if a == b {
        return None;
    }
    // Longest common subsequence table, suffix form.
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops = Vec::new(); // (marker, line number in a or b, text)
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', i, &a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i, &a[i]));
            i += 1;
        } else {
            ops.push(('+', j, &b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.0 != ' ')
        .map(|(k, _)| k)
        .collect();
    let keep = |k: usize| changed.iter().any(|&c| k + 3 >= c && k <= c + 3);
    let mut out = String::new();
    let mut skipped = false;
    for (k, (marker, line_no, text)) in ops.iter().enumerate() {
        if keep(k) {
            if skipped {
                out.push_str("   ...\n");
                skipped = false;
            }
            out.push_str(&format!("{marker} {:>4} {text}\n", line_no + 1));
        } else {
            skipped = true;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn diff_marks_changed_lines() {
        assert_eq!(diff(&lines("a b c"), &lines("a b c")), None);
        let d = diff(&lines("a b c d"), &lines("a x c d")).expect("a difference");
        assert!(d.contains("-    2 b") && d.contains("+    2 x"), "{d}");
    }

    #[test]
    fn parse_finds_markers_after_libtest_output() {
        let out = format!("\nrunning 1 test\ntest x ... {LINE_PREFIX}first\n{LINE_PREFIX}second\n{END_MARKER}\nok\n");
        assert_eq!(parse(&out), (vec!["first".to_owned(), "second".to_owned()], true));
    }

    #[test]
    fn handles_are_named_by_order() {
        let mut t = Transcript::new(false);
        assert_eq!(t.new_object(77), "o1");
        assert_eq!(t.new_object(5), "o2");
        assert_eq!(t.object(77), "o1");
        assert_eq!(t.object(9), "o?0x9");
        assert_eq!(t.new_object(77), "o3");
    }
}
