//! A small Dockerfile reader: instructions (continuations joined, comments dropped) grouped
//! into build stages. Enough for the checks, not a full parser (no heredocs, no ARG expansion).

/// One instruction: keyword in upper case, the rest of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub keyword: String,
    pub args: String,
    pub line: usize,
}

/// A `FROM` and the instructions up to the next one.
#[derive(Debug, Clone)]
pub struct Stage {
    pub image: String,
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// A `COPY` (or `ADD`): sources, destination and its `--from`.
#[derive(Debug, Clone)]
pub struct Copy {
    pub from: Option<String>,
    pub sources: Vec<String>,
    pub dest: String,
    pub line: usize,
}

pub fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if !pending.is_empty() && line.starts_with('#') {
            continue; // comment lines inside a continued instruction
        }
        if pending.is_empty() {
            start = i + 1;
        }
        if let Some(body) = line.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let (keyword, args) = pending.split_once(char::is_whitespace).unwrap_or((&pending, ""));
        out.push(Instruction { keyword: keyword.to_uppercase(), args: args.trim().to_string(), line: start });
        pending.clear();
    }
    out
}

pub fn stages(text: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for ins in instructions(text) {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins.args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage {
                image: words.first().unwrap_or(&"").to_string(),
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(ins);
        }
    }
    stages
}

impl Stage {
    pub fn copies(&self) -> Vec<Copy> {
        self.instructions
            .iter()
            .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
            .map(|i| {
                let mut from = None;
                let mut paths = Vec::new();
                for word in i.args.split_whitespace() {
                    if let Some(f) = word.strip_prefix("--from=") {
                        from = Some(f.to_string());
                    } else if !word.starts_with("--") {
                        paths.push(word.to_string());
                    }
                }
                let dest = paths.pop().unwrap_or_default();
                Copy { from, sources: paths, dest, line: i.line }
            })
            .collect()
    }

    /// The last `WORKDIR` of the stage (`/` when none).
    pub fn workdir(&self) -> String {
        self.instructions
            .iter()
            .rfind(|i| i.keyword == "WORKDIR")
            .map(|i| i.args.clone())
            .unwrap_or_else(|| "/".to_string())
    }

    pub fn runs(&self) -> impl Iterator<Item = &Instruction> {
        self.instructions.iter().filter(|i| i.keyword == "RUN")
    }

    pub fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.instructions.iter().rfind(|i| i.keyword == keyword)
    }
}

/// The `--bin NAME` arguments of a cargo command line.
pub fn cargo_bins(command: &str) -> Vec<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut bins = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if *w == "--bin" {
            if let Some(name) = words.get(i + 1) {
                bins.push(name.to_string());
            }
        } else if let Some(name) = w.strip_prefix("--bin=") {
            bins.push(name.to_string());
        }
    }
    bins
}

/// Splits `image[:tag][@digest]` into (repository, tag, digest).
pub fn image_parts(image: &str) -> (String, Option<String>, Option<String>) {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (image, None),
    };
    // A ':' after the last '/' is a tag; one before it is a registry port.
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[slash..].rfind(':') {
        Some(colon) => {
            (rest[..slash + colon].to_string(), Some(rest[slash + colon + 1..].to_string()), digest)
        }
        None => (rest.to_string(), None, digest),
    }
}
