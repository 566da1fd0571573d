//! A unified diff of two texts, line by line, as `diff -u` prints it: what `--dry-run` shows.

/// Lines of unchanged context around each change in `--dry-run`.
const DIFF_CONTEXT: usize = 3;

/// A unified diff of two texts with [`DIFF_CONTEXT`] lines of context.
pub(super) fn unified_diff(
    before: &str,
    after: &str,
    before_name: &str,
    after_name: &str,
) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let ops = diff_lines(&a, &b);
    let mut text = format!("--- {before_name}\n+++ {after_name}\n");
    // Indices into `ops` of the changes, grouped into hunks.
    let changes: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut i = 0;
    while i < changes.len() {
        let first = changes[i];
        let mut last = first;
        while i + 1 < changes.len() && changes[i + 1] - last <= 2 * DIFF_CONTEXT + 1 {
            i += 1;
            last = changes[i];
        }
        i += 1;
        let start = first.saturating_sub(DIFF_CONTEXT);
        let end = (last + DIFF_CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let (old_start, new_start) = ops[..start].iter().fold((0, 0), |(o, n), op| match op {
            Op::Same(..) => (o + 1, n + 1),
            Op::Removed(_) => (o + 1, n),
            Op::Added(_) => (o, n + 1),
        });
        let old_len = hunk.iter().filter(|op| !matches!(op, Op::Added(_))).count();
        let new_len = hunk
            .iter()
            .filter(|op| !matches!(op, Op::Removed(_)))
            .count();
        let range = |start: usize, len: usize| {
            if len == 0 {
                format!("{start},0")
            } else {
                format!("{},{len}", start + 1)
            }
        };
        text.push_str(&format!(
            "@@ -{} +{} @@\n",
            range(old_start, old_len),
            range(new_start, new_len)
        ));
        for op in hunk {
            let (sign, line) = match op {
                Op::Same(line) => (' ', line),
                Op::Removed(line) => ('-', line),
                Op::Added(line) => ('+', line),
            };
            text.push(sign);
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// One line of a diff.
#[derive(Debug, PartialEq, Eq)]
enum Op<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// A line diff: common prefix and suffix, then a longest common subsequence of the rest
/// (small here: configure changes two neighbouring keys of a sorted document).
fn diff_lines<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<Op<'a>> = a[..prefix].iter().map(|l| Op::Same(l)).collect();
    if ma.len().saturating_mul(mb.len()) > 4_000_000 {
        // Too big to align: show it all removed, then all added.
        ops.extend(ma.iter().map(|l| Op::Removed(l)));
        ops.extend(mb.iter().map(|l| Op::Added(l)));
    } else {
        // lcs[i][j]: length of the LCS of ma[i..] and mb[j..].
        let width = mb.len() + 1;
        let mut lcs = vec![0u32; (ma.len() + 1) * width];
        for i in (0..ma.len()).rev() {
            for j in (0..mb.len()).rev() {
                lcs[i * width + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * width + j + 1] + 1
                } else {
                    lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < ma.len() || j < mb.len() {
            if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
                ops.push(Op::Same(ma[i]));
                i += 1;
                j += 1;
            } else if i < ma.len()
                && (j == mb.len() || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])
            {
                ops.push(Op::Removed(ma[i]));
                i += 1;
            } else {
                ops.push(Op::Added(mb[j]));
                j += 1;
            }
        }
    }
    ops.extend(a[a.len() - suffix..].iter().map(|l| Op::Same(l)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changes_with_context() {
        let a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
        let b = "1\n2\n3\n4\nX\n6\n7\n8\n9\n10\nY\n";
        assert_eq!(
            unified_diff(a, b, "a", "b"),
            "--- a\n+++ b\n@@ -2,9 +2,10 @@\n 2\n 3\n 4\n-5\n+X\n 6\n 7\n 8\n 9\n 10\n+Y\n"
        );
        assert_eq!(unified_diff(a, a, "a", "b"), "--- a\n+++ b\n");
        assert_eq!(
            unified_diff("", "x\n", "/dev/null", "b"),
            "--- /dev/null\n+++ b\n@@ -0,0 +1,1 @@\n+x\n"
        );
    }
}
