//! Both spellings of an option name, and the name a caller most likely
//! meant when a key is unknown.

/// The known key the caller most likely meant: the same letters in another
/// case or spelling, a prefix of it, or a typo or two away.
pub fn suggestion<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
  let normal = |s: &str| -> String {
    s.chars()
      .filter(|c| *c != '_' && *c != '-')
      .flat_map(char::to_lowercase)
      .collect()
  };
  let wanted = normal(key);
  if wanted.is_empty() {
    return None;
  }
  known
    .iter()
    .map(|name| {
      let candidate = normal(name);
      let score = if candidate == wanted {
        0
      } else if candidate.starts_with(&wanted) || wanted.starts_with(&candidate) {
        1
      } else {
        1 + edit_distance(&candidate, &wanted)
      };
      (score, *name)
    })
    .filter(|(score, _)| *score <= 3)
    .min_by_key(|(score, _)| *score)
    .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
  let b: Vec<char> = b.chars().collect();
  let mut row: Vec<usize> = (0..=b.len()).collect();
  for (i, ca) in a.chars().enumerate() {
    let mut previous = row[0];
    row[0] = i + 1;
    for (j, cb) in b.iter().enumerate() {
      let current = row[j + 1];
      row[j + 1] = (previous + usize::from(ca != *cb))
        .min(row[j] + 1)
        .min(current + 1);
      previous = current;
    }
  }
  row[b.len()]
}

pub fn camel_case(snake: &str) -> String {
  let mut out = String::with_capacity(snake.len());
  let mut upper = false;
  for c in snake.chars() {
    if c == '_' {
      upper = true;
    } else if upper {
      out.extend(c.to_uppercase());
      upper = false;
    } else {
      out.push(c);
    }
  }
  out
}
