//! Text sources → token windows.
//!
//! A corpus is an ordered list of files: plain text (`.txt`, `.md`: one
//! document per file), JSON lines (`.jsonl`: one document per line, from its
//! `text` field) and CSV (`.csv`: one document per row, from a named column).
//! Folders are walked and globs expanded in sorted order, so the same paths
//! always give the same documents in the same order: harvesting depends on
//! that to resume where it stopped.
//!
//! Windows pack documents end to end, separated as the model was trained
//! (see [`Separator`]), and cut the stream every `context` tokens, as
//! SAELens and sparsify do; a document longer than the context simply
//! continues in the next window.
// The tokenizer, not the model: the model reads windows, so the corpus
// sits between the two (core::data_flow keeps it so).
use crate::model::tokenizer::Tokenizer;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// How the documents of a corpus are read.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusOptions {
    /// The JSON field holding the text in `.jsonl` files.
    pub field: String,
    /// The CSV column holding the text in `.csv` files.
    pub column: String,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        CorpusOptions {
            field: "text".into(),
            column: "text".into(),
        }
    }
}

/// An ordered list of text files.
#[derive(Debug, Clone)]
pub struct Corpus {
    files: Vec<PathBuf>,
    options: CorpusOptions,
}

/// One document of a corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Position in the corpus, counting from 0.
    pub index: usize,
    /// `FILE` or `FILE:LINE` (1-based line or CSV row), to find it again.
    pub source: String,
    pub text: String,
}

const EXTENSIONS: [&str; 4] = ["txt", "md", "jsonl", "csv"];

impl Corpus {
    /// Files, folders (walked recursively) and globs (`data/**/*.jsonl`).
    pub fn from_paths(paths: &[String], options: CorpusOptions) -> Result<Self> {
        let mut files = Vec::new();
        for pattern in paths {
            let before = files.len();
            expand(pattern, &mut files)?;
            if files.len() == before {
                return Err(Error::invalid(format!(
                    "corpus: '{pattern}' matches no .txt, .md, .jsonl or .csv file"
                )));
            }
        }
        if files.is_empty() {
            return Err(Error::invalid("corpus: no paths given"));
        }
        Ok(Corpus { files, options })
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// How its documents are read.
    pub fn options(&self) -> &CorpusOptions {
        &self.options
    }

    /// Identifies the corpus (paths and sizes), so a resumed harvest can
    /// check that it continues over the same text.
    pub fn fingerprint(&self) -> String {
        // FNV-1a: tiny, stable across Rust versions (unlike DefaultHasher).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for file in &self.files {
            let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            for byte in file.to_string_lossy().bytes().chain(size.to_le_bytes()) {
                hash = (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{} files, fnv1a {hash:016x}", self.files.len())
    }

    /// Every non-empty document, in order, read one file at a time.
    pub fn documents(&self) -> impl Iterator<Item = Result<Document>> + '_ {
        let mut index = 0;
        self.files
            .iter()
            .flat_map(move |file| match read_documents(file, &self.options) {
                Ok(docs) => docs.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(err) => vec![Err(err)],
            })
            .filter(|doc| !matches!(doc, Ok((_, text)) if text.trim().is_empty()))
            .map(move |doc| {
                doc.map(|(source, text)| {
                    index += 1;
                    Document {
                        index: index - 1,
                        source,
                        text,
                    }
                })
            })
    }

    /// Windows of `context` tokens over the whole corpus.
    pub fn windows<'a>(&'a self, tokenizer: &'a Tokenizer, context: usize) -> Result<Windows<'a>> {
        if context < 2 {
            return Err(Error::invalid(format!(
                "context must be at least 2 tokens, got {context}"
            )));
        }
        Ok(Windows {
            documents: Box::new(self.documents()),
            tokenizer,
            separator: Separator::for_tokenizer(tokenizer),
            context,
            pending: Vec::new(),
            done: false,
            produced: 0,
        })
    }
}

fn expand(pattern: &str, files: &mut Vec<PathBuf>) -> Result<()> {
    let path = Path::new(pattern);
    if path.is_file() {
        files.push(path.to_path_buf());
    } else if path.is_dir() {
        walk(path, files)?;
    } else if pattern.contains(['*', '?', '[']) {
        let matches = glob::glob(pattern)
            .map_err(|e| Error::invalid(format!("corpus: bad glob '{pattern}': {e}")))?;
        let mut found: Vec<PathBuf> = matches
            .filter_map(|m| m.ok())
            .filter(|p| has_text_extension(p))
            .collect();
        found.sort();
        files.extend(found);
    } else {
        return Err(Error::io(
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    Ok(())
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, files)?;
        } else if has_text_extension(&entry) {
            files.push(entry);
        }
    }
    Ok(())
}

fn has_text_extension(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
}

/// `(source, text)` for every document of one file.
fn read_documents(file: &Path, options: &CorpusOptions) -> Result<Vec<(String, String)>> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
    let name = file.display().to_string();
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::invalid(format!(
            "{name} is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "jsonl" => read_jsonl(&name, &text, &options.field),
        "csv" => read_csv(&name, &text, &options.column),
        _ => Ok(vec![(name, text)]),
    }
}

fn read_jsonl(name: &str, text: &str, field: &str) -> Result<Vec<(String, String)>> {
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let source = format!("{name}:{}", i + 1);
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::invalid(format!("{source}: not a JSON line ({e})")))?;
        let text = value
            .get(field)
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::invalid(format!("{source}: no text field '{field}'")))?;
        docs.push((source, text.to_string()));
    }
    Ok(docs)
}

fn read_csv(name: &str, text: &str, column: &str) -> Result<Vec<(String, String)>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Error::invalid(format!("{name}: bad CSV header ({e})")))?
        .clone();
    let Some(at) = headers.iter().position(|h| h == column) else {
        let known: Vec<&str> = headers.iter().collect();
        return Err(Error::invalid(format!(
            "{name}: no column '{column}' (columns: {})",
            known.join(", ")
        )));
    };
    let mut docs = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let source = format!("{name}:{}", i + 2);
        let record = record.map_err(|e| Error::invalid(format!("{source}: bad CSV row ({e})")))?;
        docs.push((source, record.get(at).unwrap_or("").to_string()));
    }
    Ok(docs)
}

/// How documents are joined in a window, as the model saw them in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separator {
    /// BOS before every document (models whose `add_bos_token` is true: Llama).
    Bos(u32),
    /// An end-of-text token after every document. SmolLM2, like GPT-2 and
    /// StarCoder, was pretrained on documents joined by `<|endoftext|>`; its
    /// instruct GGUF names `<|im_end|>` as EOS, which ends chat turns, not documents.
    Eos(u32),
    /// Documents simply follow each other.
    None,
}

impl Separator {
    pub fn for_tokenizer(tokenizer: &Tokenizer) -> Self {
        if tokenizer.add_bos_token() {
            if let Some(bos) = tokenizer.bos_id() {
                return Separator::Bos(bos);
            }
        }
        match tokenizer.token_id("<|endoftext|>").or(tokenizer.eos_id()) {
            Some(id) => Separator::Eos(id),
            None => Separator::None,
        }
    }
}

/// Where a token of a window came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Index of the document (a separator belongs to the document it ends or starts).
    pub document: u32,
    /// Position of the token within its document.
    pub position: u32,
    /// Whether the token is a separator rather than text.
    pub separator: bool,
}

/// `context` consecutive tokens of the corpus (the last window may be shorter).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub tokens: Vec<u32>,
    pub origins: Vec<Origin>,
}

/// The windows of a corpus, produced lazily.
pub struct Windows<'a> {
    documents: Box<dyn Iterator<Item = Result<Document>> + 'a>,
    tokenizer: &'a Tokenizer,
    separator: Separator,
    context: usize,
    pending: Vec<(u32, Origin)>,
    done: bool,
    produced: usize,
}

impl Windows<'_> {
    /// Reads documents until a full window is pending (or the corpus ends).
    fn fill(&mut self) -> Result<()> {
        while !self.done && self.pending.len() < self.context {
            let Some(doc) = self.documents.next().transpose()? else {
                self.done = true;
                break;
            };
            let ids = self.tokenizer.encode(&doc.text, false)?;
            let origin = |position: usize, separator: bool| Origin {
                document: doc.index as u32,
                position: position as u32,
                separator,
            };
            if let Separator::Bos(bos) = self.separator {
                self.pending.push((bos, origin(0, true)));
            }
            self.pending.extend(
                ids.iter()
                    .enumerate()
                    .map(|(i, &id)| (id, origin(i, false))),
            );
            if let Separator::Eos(eos) = self.separator {
                self.pending.push((eos, origin(ids.len(), true)));
            }
        }
        Ok(())
    }
}

impl Iterator for Windows<'_> {
    type Item = Result<Window>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(err) = self.fill() {
            self.done = true;
            self.pending.clear();
            return Some(Err(err));
        }
        if self.pending.len() < 2 {
            if self.produced == 0 && self.done {
                self.produced = 1;
                return Some(Err(Error::invalid(
                    "the corpus has no text to make windows of",
                )));
            }
            return None;
        }
        let take = self.pending.len().min(self.context);
        let (tokens, origins) = self.pending.drain(..take).unzip();
        self.produced += 1;
        Some(Ok(Window { tokens, origins }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    }

    fn texts(corpus: &Corpus) -> Vec<String> {
        corpus.documents().map(|d| d.unwrap().text).collect()
    }

    #[test]
    fn files_folders_and_globs_read_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "b/2.txt", b"second file");
        write(root, "b/1.md", b"first file");
        write(root, "b/skip.bin", b"not text");
        write(
            root,
            "c/x.jsonl",
            b"{\"text\": \"line one\"}\n\n{\"text\": \"line two\", \"id\": 3}\n",
        );
        write(root, "c/y.csv", b"id,body\n1,\"a, quoted\"\n2,plain\n");
        let folder =
            Corpus::from_paths(&[root.join("b").display().to_string()], Default::default())
                .unwrap();
        assert_eq!(texts(&folder), ["first file", "second file"]);
        let options = CorpusOptions {
            column: "body".into(),
            ..Default::default()
        };
        let glob = format!("{}/c/*", root.display());
        let mixed = Corpus::from_paths(&[glob], options).unwrap();
        assert_eq!(
            texts(&mixed),
            ["line one", "line two", "a, quoted", "plain"]
        );
        let docs: Vec<Document> = mixed.documents().map(|d| d.unwrap()).collect();
        assert!(docs[1].source.ends_with("x.jsonl:3"), "{}", docs[1].source);
        assert_eq!(docs[3].index, 3);
        assert_eq!(mixed.fingerprint(), mixed.clone().fingerprint());
    }

    /// The error reading the first document of a one-file corpus.
    fn first_document_error(path: String) -> String {
        Corpus::from_paths(&[path], Default::default())
            .unwrap()
            .documents()
            .next()
            .unwrap()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_sources_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let err = first_document_error(write(root, "latin1.txt", b"caf\xe9"));
        assert!(
            err.contains("latin1.txt is not UTF-8 text (invalid byte at offset 3)"),
            "{err}"
        );
        let err = first_document_error(write(root, "a.jsonl", b"{\"body\": \"x\"}\n"));
        assert!(err.contains("a.jsonl:1: no text field 'text'"), "{err}");
        let err = first_document_error(write(root, "a.csv", b"id,body\n1,x\n"));
        assert!(
            err.contains("no column 'text' (columns: id, body)"),
            "{err}"
        );
        let err = Corpus::from_paths(&[format!("{}/*.none", root.display())], Default::default())
            .unwrap_err();
        assert!(err.to_string().contains("matches no .txt"), "{err}");
        assert!(Corpus::from_paths(
            &[root.join("missing.txt").display().to_string()],
            Default::default()
        )
        .is_err());
        assert!(Corpus::from_paths(&[], Default::default()).is_err());
        let empty = write(root, "empty.txt", b"  \n");
        assert!(texts(&Corpus::from_paths(&[empty], Default::default()).unwrap()).is_empty());
    }
}
