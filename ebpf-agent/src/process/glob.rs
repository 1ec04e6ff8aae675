//! Shell-style globs for executable paths (`*` any run of characters, `?`
//! one character), as the old agent's `executable_path` selector took them.

/// Whether `text` matches `pattern` in full.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative matcher with one backtrack point for the last `*`: linear
    // in practice, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("/usr/bin/python*", "/usr/bin/python3.11"));
        assert!(matches("*collector*", "/usr/local/bin/agent-collector"));
        assert!(matches("*/java", "/opt/jdk/bin/java"));
        assert!(matches("/bin/?s", "/bin/ls"));
        assert!(!matches("/usr/bin/python*", "/usr/local/bin/python3"));
        assert!(!matches("*/java", "/opt/jdk/bin/javac"));
        assert!(matches("*", ""));
        assert!(!matches("?", ""));
        assert!(matches("a*b*c", "a-x-b-y-c"));
        assert!(!matches("a*b*c", "a-x-c-y-b"));
    }
}
