//! The small, safe part of Python's pickle that Django's Redis cache uses for sessions.
//!
//! Django's `RedisCache` stores a session as `pickle.dumps(session_dict, HIGHEST_PROTOCOL)`
//! (docs/format.md §5). Session data is JSON-shaped, so only the opcodes for dicts, lists, tuples,
//! strings, numbers, booleans and `None` are read (protocols 0 to 5, with memo references),
//! and written (protocol 2, which every Python 3 reads). Anything that would build or call a
//! Python object (`GLOBAL`, `STACK_GLOBAL`, `REDUCE`, `BUILD`, `INST`, `OBJ`, `NEWOBJ`, …) is
//! refused: unpickling those runs code.
//!
//! Memo references (`BINGET`, `DUP`) let a few bytes name one value many times, and a list
//! of two references to the list before it, nested 30 deep, names 2^30 values in 1.2 KB. The
//! reader keeps each memoised value once (an arena of nodes that refer to each other by index),
//! measures what the value would expand to before building any of it, and refuses input over
//! [`MAX_PICKLE_BYTES`] or expanding past [`MAX_EXPANDED_BYTES`] as corrupt data, so the work
//! and memory stay proportional to the input.
//!
//! Why not the `serde-pickle` crate: version 1.2.0 reads Django's five cache vectors exactly as
//! this reader does and refuses the bombs above in under 0.4 ms, but it refuses them, and valid
//! pickles, as "recursive structure found" whenever a shared value is referenced one level
//! deeper: `a = {'q': 1}; pickle.dumps({'x': [a, [a]]}, 5)` fails there and loads here
//! (measured on Python 3.11's bytes), and a session a Django app wrote must not be lost.

use serde_json::{Map, Number, Value};

use crate::data::Data;

/// Why bytes are not a session pickle this reader accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    /// The bytes end in the middle of an opcode.
    #[error("the pickle is truncated")]
    Truncated,
    /// An opcode this reader refuses (one that builds Python objects, or is unknown).
    #[error("pickle opcode 0x{0:02x} is not allowed in session data")]
    Opcode(u8),
    /// The opcodes do not make a well-formed value (stack underflow, bad memo index, …).
    #[error("malformed pickle: {0}")]
    Malformed(&'static str),
    /// The value is not a JSON-shaped dict (a non-string key, a cycle, a huge integer, …).
    #[error("the pickled session is not JSON-shaped: {0}")]
    NotJson(&'static str),
    /// The pickle is longer than [`MAX_PICKLE_BYTES`].
    #[error("the pickle is {len} bytes, over the {limit}-byte bound on a session pickle")]
    TooLong {
        /// The pickle's length.
        len: usize,
        /// [`MAX_PICKLE_BYTES`].
        limit: usize,
    },
    /// Memo references repeat values until the session would expand past
    /// [`MAX_EXPANDED_BYTES`] (a "pickle bomb").
    #[error("the pickle expands to more than {limit} bytes of session data (memo references repeat values); refused as corrupt")]
    Expands {
        /// [`MAX_EXPANDED_BYTES`].
        limit: usize,
    },
}

/// The longest pickle read, in bytes: the same 1 MiB that a signed cookie may inflate to.
pub const MAX_PICKLE_BYTES: usize = 1 << 20;

/// The most a pickle may expand to, counted as the length of the session's JSON text: the
/// 1 MiB a signed cookie may inflate to, so a pickled session holds what a cookie could.
pub const MAX_EXPANDED_BYTES: usize = 1 << 20;

/// Nesting deeper than this is refused (the expanded value is built recursively).
const MAX_DEPTH: usize = 256;

enum Obj {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<usize>),
    Tuple(Vec<usize>),
    Dict(Vec<(usize, usize)>),
}

enum Slot {
    Mark,
    Ref(usize),
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    arena: Vec<Obj>,
    stack: Vec<Slot>,
    memo: std::collections::HashMap<u64, usize>,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).ok_or(PickleError::Truncated)?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(PickleError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le(&mut self, n: usize) -> Result<u64, PickleError> {
        let mut buf = [0u8; 8];
        buf[..n].copy_from_slice(self.take(n)?);
        Ok(u64::from_le_bytes(buf))
    }

    fn len(&mut self, n: usize) -> Result<usize, PickleError> {
        usize::try_from(self.le(n)?).map_err(|_| PickleError::Truncated)
    }

    /// A protocol-0 argument: the bytes up to the next newline.
    fn line_bytes(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = self.bytes.get(self.pos..).ok_or(PickleError::Truncated)?;
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated)?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    /// A protocol-0 argument as ASCII text.
    fn line(&mut self) -> Result<&'a str, PickleError> {
        std::str::from_utf8(self.line_bytes()?)
            .map_err(|_| PickleError::Malformed("non-ASCII text"))
    }

    fn push(&mut self, obj: Obj) {
        self.arena.push(obj);
        self.stack.push(Slot::Ref(self.arena.len() - 1));
    }

    fn pop(&mut self) -> Result<usize, PickleError> {
        match self.stack.pop() {
            Some(Slot::Ref(i)) => Ok(i),
            Some(Slot::Mark) => Err(PickleError::Malformed("unexpected mark")),
            None => Err(PickleError::Malformed("stack underflow")),
        }
    }

    fn top(&self) -> Result<usize, PickleError> {
        match self.stack.last() {
            Some(Slot::Ref(i)) => Ok(*i),
            _ => Err(PickleError::Malformed("no value on the stack")),
        }
    }

    /// The values above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<usize>, PickleError> {
        let at = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or(PickleError::Malformed("no mark"))?;
        let items = self
            .stack
            .drain(at + 1..)
            .map(|s| match s {
                Slot::Ref(i) => i,
                Slot::Mark => 0,
            })
            .collect();
        self.stack.pop();
        Ok(items)
    }

    fn extend(&mut self, target: usize, items: Vec<usize>) -> Result<(), PickleError> {
        match &mut self.arena[target] {
            Obj::List(list) => list.extend(items),
            _ => return Err(PickleError::Malformed("append to a non-list")),
        }
        Ok(())
    }

    fn set_items(&mut self, target: usize, items: &[usize]) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(PickleError::Malformed("odd number of dict items"));
        }
        let Obj::Dict(dict) = &mut self.arena[target] else {
            return Err(PickleError::Malformed("set item on a non-dict"));
        };
        for pair in items.chunks(2) {
            dict.push((pair[0], pair[1]));
        }
        Ok(())
    }

    fn memo_put(&mut self, id: u64) -> Result<(), PickleError> {
        let top = self.top()?;
        self.memo.insert(id, top);
        Ok(())
    }

    fn memo_get(&mut self, id: u64) -> Result<(), PickleError> {
        let i = *self
            .memo
            .get(&id)
            .ok_or(PickleError::Malformed("unknown memo reference"))?;
        self.stack.push(Slot::Ref(i));
        Ok(())
    }

    fn int_line(&mut self) -> Result<Obj, PickleError> {
        let text = self.line()?.trim_end_matches('L');
        Ok(match text {
            // Protocol 0 writes booleans as INT "01" / "00".
            "01" => Obj::Bool(true),
            "00" => Obj::Bool(false),
            _ => Obj::Int(
                text.parse()
                    .map_err(|_| PickleError::NotJson("integer out of range"))?,
            ),
        })
    }

    fn long(&mut self, n: usize) -> Result<Obj, PickleError> {
        let bytes = self.take(n)?;
        if n > 16 {
            return Err(PickleError::NotJson("integer out of range"));
        }
        let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
            [0xffu8; 16]
        } else {
            [0u8; 16]
        };
        buf[..n].copy_from_slice(bytes);
        Ok(Obj::Int(i128::from_le_bytes(buf)))
    }

    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    self.u8()?;
                }
                0x95 => {
                    // FRAME: only a length hint.
                    self.take(8)?;
                }
                b'.' => break,
                b'(' => self.stack.push(Slot::Mark),
                b'}' => self.push(Obj::Dict(Vec::new())),
                b']' => self.push(Obj::List(Vec::new())),
                b')' => self.push(Obj::Tuple(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Dict(Vec::new()));
                    let top = self.top()?;
                    self.set_items(top, &items)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::List(items));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(PickleError::Malformed("stack underflow"));
                    }
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Obj::Tuple(items));
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let target = self.top()?;
                    self.set_items(target, &[key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.set_items(target, &items)?;
                }
                b'a' => {
                    let value = self.pop()?;
                    let target = self.top()?;
                    self.extend(target, vec![value])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.extend(target, items)?;
                }
                b'0' => {
                    self.stack
                        .pop()
                        .ok_or(PickleError::Malformed("stack underflow"))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.stack.push(Slot::Ref(top));
                }
                b'N' => self.push(Obj::None),
                0x88 => self.push(Obj::Bool(true)),
                0x89 => self.push(Obj::Bool(false)),
                b'K' => {
                    let n = self.le(1)?;
                    self.push(Obj::Int(i128::from(n)));
                }
                b'M' => {
                    let n = self.le(2)?;
                    self.push(Obj::Int(i128::from(n)));
                }
                b'J' => {
                    let bytes = self.take(4)?;
                    let n = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                    self.push(Obj::Int(i128::from(n)));
                }
                0x8a => {
                    let n = self.len(1)?;
                    let obj = self.long(n)?;
                    self.push(obj);
                }
                0x8b => {
                    let n = self.len(4)?;
                    let obj = self.long(n)?;
                    self.push(obj);
                }
                b'I' | b'L' => {
                    let obj = self.int_line()?;
                    self.push(obj);
                }
                b'G' => {
                    let bytes = self.take(8)?;
                    let mut buf = [0u8; 8];
                    buf.copy_from_slice(bytes);
                    self.push(Obj::Float(f64::from_be_bytes(buf)));
                }
                b'F' => {
                    let f = self
                        .line()?
                        .parse()
                        .map_err(|_| PickleError::Malformed("bad float"))?;
                    self.push(Obj::Float(f));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.len(4)?,
                        0x8c => self.len(1)?,
                        _ => self.len(8)?,
                    };
                    let text = std::str::from_utf8(self.take(n)?)
                        .map_err(|_| PickleError::Malformed("non-UTF-8 string"))?
                        .to_owned();
                    self.push(Obj::Str(text));
                }
                b'V' => {
                    let text = unescape_raw_unicode(self.line_bytes()?)?;
                    self.push(Obj::Str(text));
                }
                0x94 => {
                    let id = self.memo.len() as u64;
                    self.memo_put(id)?;
                }
                b'q' => {
                    let id = self.le(1)?;
                    self.memo_put(id)?;
                }
                b'r' => {
                    let id = self.le(4)?;
                    self.memo_put(id)?;
                }
                b'p' => {
                    let id = self
                        .line()?
                        .parse()
                        .map_err(|_| PickleError::Malformed("bad memo index"))?;
                    self.memo_put(id)?;
                }
                b'h' => {
                    let id = self.le(1)?;
                    self.memo_get(id)?;
                }
                b'j' => {
                    let id = self.le(4)?;
                    self.memo_get(id)?;
                }
                b'g' => {
                    let id = self
                        .line()?
                        .parse()
                        .map_err(|_| PickleError::Malformed("bad memo index"))?;
                    self.memo_get(id)?;
                }
                other => return Err(PickleError::Opcode(other)),
            }
        }
        let root = self.pop()?;
        let mut seen = vec![Seen::No; self.arena.len()];
        self.measure(root, 0, &mut seen)?;
        self.to_json(root)
    }

    /// The expanded size of value `i` (about its JSON text length) and its nesting height,
    /// each node measured once however many references reach it, so this is linear in the
    /// arena. Refuses past [`MAX_EXPANDED_BYTES`] or [`MAX_DEPTH`], and a value inside itself.
    fn measure(&self, i: usize, depth: usize, seen: &mut [Seen]) -> Result<Measured, PickleError> {
        let too_deep = PickleError::NotJson("nested too deep");
        match seen[i] {
            Seen::Done(m) if depth + m.height > MAX_DEPTH => return Err(too_deep),
            Seen::Done(m) => return Ok(m),
            Seen::Open => return Err(PickleError::NotJson("a value that contains itself")),
            Seen::No if depth > MAX_DEPTH => return Err(too_deep),
            Seen::No => {}
        }
        seen[i] = Seen::Open;
        let mut m = Measured { size: 2, height: 0 };
        let add = |m: &mut Measured, child: Measured, extra: usize| {
            m.size = m.size.saturating_add(child.size).saturating_add(extra);
            m.height = m.height.max(child.height + 1);
            if m.size > MAX_EXPANDED_BYTES {
                return Err(PickleError::Expands {
                    limit: MAX_EXPANDED_BYTES,
                });
            }
            Ok(())
        };
        match &self.arena[i] {
            Obj::None | Obj::Bool(_) => m.size = 5,
            Obj::Int(n) => {
                let digits = n.unsigned_abs().checked_ilog10().unwrap_or(0) as usize + 1;
                m.size = digits + usize::from(*n < 0);
            }
            // serde_json writes an f64 in at most 24 characters.
            Obj::Float(_) => m.size = 24,
            Obj::Str(s) => m.size = s.len().saturating_add(2),
            Obj::List(items) | Obj::Tuple(items) => {
                for &j in items {
                    let child = self.measure(j, depth + 1, seen)?;
                    add(&mut m, child, 1)?;
                }
            }
            Obj::Dict(pairs) => {
                for &(k, v) in pairs {
                    let Obj::Str(key) = &self.arena[k] else {
                        return Err(PickleError::NotJson("a dict key that is not a string"));
                    };
                    let child = self.measure(v, depth + 1, seen)?;
                    add(&mut m, child, key.len().saturating_add(4))?;
                }
            }
        }
        if m.size > MAX_EXPANDED_BYTES {
            return Err(PickleError::Expands {
                limit: MAX_EXPANDED_BYTES,
            });
        }
        seen[i] = Seen::Done(m);
        Ok(m)
    }

    /// Builds the value; [`Self::measure`] has bounded its size and depth and ruled out cycles.
    fn to_json(&self, i: usize) -> Result<Value, PickleError> {
        Ok(match &self.arena[i] {
            Obj::None => Value::Null,
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(n) => {
                if let Ok(n) = i64::try_from(*n) {
                    Value::from(n)
                } else if let Ok(n) = u64::try_from(*n) {
                    Value::from(n)
                } else {
                    return Err(PickleError::NotJson("integer beyond 64 bits"));
                }
            }
            // Python writes NaN and infinities too; JSON (and serde_json) has no place for them.
            Obj::Float(f) => {
                Value::Number(Number::from_f64(*f).ok_or(PickleError::NotJson("NaN or infinity"))?)
            }
            Obj::Str(s) => Value::String(s.clone()),
            Obj::List(items) | Obj::Tuple(items) => Value::Array(
                items
                    .iter()
                    .map(|&j| self.to_json(j))
                    .collect::<Result<_, _>>()?,
            ),
            Obj::Dict(pairs) => {
                let mut map = Map::new();
                for &(k, v) in pairs {
                    let Obj::Str(key) = &self.arena[k] else {
                        return Err(PickleError::NotJson("a dict key that is not a string"));
                    };
                    map.insert(key.clone(), self.to_json(v)?);
                }
                Value::Object(map)
            }
        })
    }
}

/// What a value expands to: about its JSON text length, and how deep it nests.
#[derive(Clone, Copy)]
struct Measured {
    size: usize,
    height: usize,
}

/// Where [`Reader::measure`] is with a node.
#[derive(Clone, Copy)]
enum Seen {
    No,
    Open,
    Done(Measured),
}

/// Python's `raw-unicode-escape` decoding of a protocol-0 `UNICODE` argument: `\uXXXX` and
/// `\UXXXXXXXX` escapes, every other byte as the Latin-1 character it is.
fn unescape_raw_unicode(bytes: &[u8]) -> Result<String, PickleError> {
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let width = match chars.clone().next() {
            Some('u') => 4,
            Some('U') => 8,
            _ => {
                out.push(c);
                continue;
            }
        };
        chars.next();
        let hex: String = chars.by_ref().take(width).collect();
        let code = u32::from_str_radix(&hex, 16)
            .ok()
            .filter(|_| hex.len() == width)
            .ok_or(PickleError::Malformed("bad \\u escape"))?;
        out.push(char::from_u32(code).ok_or(PickleError::Malformed("bad \\u escape"))?);
    }
    Ok(out)
}

/// Reads a pickled session dict (any protocol, 0 to 5), refusing every opcode that would
/// build a Python object, and any pickle that is longer than [`MAX_PICKLE_BYTES`] or expands
/// past [`MAX_EXPANDED_BYTES`]. Time and memory are linear in the input's length.
///
/// # Errors
/// [`PickleError`] when the bytes are not a pickle of a JSON-shaped dict.
pub fn loads(bytes: &[u8]) -> Result<Data, PickleError> {
    if bytes.len() > MAX_PICKLE_BYTES {
        return Err(PickleError::TooLong {
            len: bytes.len(),
            limit: MAX_PICKLE_BYTES,
        });
    }
    let reader = Reader {
        bytes,
        pos: 0,
        arena: Vec::new(),
        stack: Vec::new(),
        memo: std::collections::HashMap::new(),
    };
    match reader.run()? {
        Value::Object(map) => Ok(map),
        _ => Err(PickleError::NotJson("the session is not a dict")),
    }
}

/// Pickles session data with protocol 2, the form Python's `pickle.loads` (and so Django's
/// cache) reads back as the same dict. The output depends only on the data, so a
/// compare-and-swap on stored bytes works.
pub fn dumps(data: &Data) -> Vec<u8> {
    let mut out = vec![0x80, 2];
    write_dict(&mut out, data);
    out.push(b'.');
    out
}

/// Python's pickler batches SETITEMS/APPENDS by 1000; any size is valid, this follows suit.
const BATCH: usize = 1000;

fn write_dict(out: &mut Vec<u8>, map: &Map<String, Value>) {
    out.push(b'}');
    let pairs: Vec<_> = map.iter().collect();
    for chunk in pairs.chunks(BATCH) {
        out.push(b'(');
        for (k, v) in chunk {
            write_str(out, k);
            write_value(out, v);
        }
        out.push(b'u');
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    // A session string over 4 GiB cannot reach here: the cookie/store limits are far lower.
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_int(out: &mut Vec<u8>, n: i128) {
    if let Ok(small) = u8::try_from(n) {
        out.extend_from_slice(&[b'K', small]);
    } else if let Ok(short) = u16::try_from(n) {
        out.push(b'M');
        out.extend_from_slice(&short.to_le_bytes());
    } else if let Ok(int) = i32::try_from(n) {
        out.push(b'J');
        out.extend_from_slice(&int.to_le_bytes());
    } else {
        // LONG1: the shortest little-endian two's complement that keeps the sign.
        let bytes = n.to_le_bytes();
        let mut len = bytes.len();
        while len > 1 {
            let (last, prev) = (bytes[len - 1], bytes[len - 2]);
            let redundant = (last == 0 && prev & 0x80 == 0) || (last == 0xff && prev & 0x80 != 0);
            if !redundant {
                break;
            }
            len -= 1;
        }
        out.push(0x8a);
        out.push(u8::try_from(len).unwrap_or(16));
        out.extend_from_slice(&bytes[..len]);
    }
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(b'N'),
        Value::Bool(true) => out.push(0x88),
        Value::Bool(false) => out.push(0x89),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                write_int(out, i128::from(i));
            } else if let Some(u) = n.as_u64() {
                write_int(out, i128::from(u));
            } else {
                out.push(b'G');
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b']');
            for chunk in items.chunks(BATCH) {
                out.push(b'(');
                for item in chunk {
                    write_value(out, item);
                }
                out.push(b'e');
            }
        }
        Value::Object(map) => write_dict(out, map),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Data {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn round_trips_json_shaped_data() {
        let d = data(json!({
            "s": "é😀", "i": [0, 255, 256, 65535, 65536, -1, -2147483648, 2147483648_i64,
            i64::MAX, i64::MIN, u64::MAX], "f": [1.5, -0.0, 1e100], "b": [true, false, null],
            "m": {"nested": {"deep": []}}, "e": {}
        }));
        assert_eq!(loads(&dumps(&d)).unwrap(), d);
    }

    #[test]
    fn reads_python_protocol_5_with_memo_references() {
        // pickle.dumps({'a': ['x', 'x'], 'b': {'a': 1}}, 5) from Python 3.11: the second 'x'
        // and the inner 'a' are BINGET references.
        let bytes = b"\x80\x05\x95\x1e\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(\x8c\x01x\x94h\x03e\x8c\x01b\x94}\x94h\x01K\x01su.";
        assert_eq!(
            loads(bytes).unwrap(),
            data(json!({"a": ["x", "x"], "b": {"a": 1}}))
        );
    }

    #[test]
    fn a_value_shared_at_two_depths_loads() {
        // a = {'q': 1}; pickle.dumps({'x': [a, [a]]}, 5) from Python 3.11 (serde-pickle 1.2.0
        // refuses it as recursive).
        let bytes = b"\x80\x05\x95\x1a\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01x\x94]\x94(}\x94\x8c\x01q\x94K\x01s]\x94h\x03aes.";
        assert_eq!(
            loads(bytes).unwrap(),
            data(json!({"x": [{"q": 1}, [{"q": 1}]]}))
        );
    }

    #[test]
    fn reads_protocol_0() {
        // pickle.dumps({'k': [1, '\u00e9', True, None, 2.5]}, 0) from Python 3.11.
        let bytes = b"(dp0\nVk\np1\n(lp2\nI1\naV\xe9\np3\naI01\naNaF2.5\nas.";
        assert_eq!(
            loads(bytes).unwrap(),
            data(json!({"k": [1, "é", true, null, 2.5]}))
        );
    }

    #[test]
    fn refuses_globals_and_reduce() {
        // pickle.dumps(os.system) style payloads.
        assert_eq!(
            loads(b"\x80\x02cos\nsystem\nq\x00."),
            Err(PickleError::Opcode(b'c'))
        );
        assert_eq!(
            loads(b"\x80\x04\x8c\x02os\x8c\x06system\x93."),
            Err(PickleError::Opcode(0x93))
        );
        assert!(
            loads(b"\x80\x02}q\x00(X\x01\x00\x00\x00a").is_err(),
            "truncated"
        );
        assert!(loads(b"\x80\x02]q\x00.").is_err(), "not a dict");
        // A list that contains itself.
        assert!(loads(b"\x80\x02}(X\x01\x00\x00\x00a]q\x00h\x00aus.").is_err());
    }

    /// `{'k': v30}` where `v0` is a string of `leaf` bytes and `v(i+1)` is a list of `fanout`
    /// memo references to `vi`: 2 + ~2·fanout bytes per level, fanout^levels values expanded.
    fn memo_bomb(levels: u8, fanout: usize, leaf: u32) -> Vec<u8> {
        let mut out = b"\x80\x02}X\x01\x00\x00\x00k".to_vec();
        out.push(b'X');
        out.extend_from_slice(&leaf.to_le_bytes());
        out.extend(std::iter::repeat_n(b'x', leaf as usize));
        out.extend_from_slice(b"q\x000");
        for level in 0..levels {
            out.push(b'(');
            for _ in 0..fanout {
                out.extend_from_slice(&[b'h', level]);
            }
            out.extend_from_slice(&[b'l', b'q', level + 1, b'0']);
        }
        out.extend_from_slice(&[b'h', levels, b's', b'.']);
        out
    }

    #[test]
    fn pickle_memo_bomb_is_refused_as_too_large() {
        for (levels, fanout, leaf) in [(30, 2, 1000), (30, 255, 1), (200, 2, 0)] {
            let bomb = memo_bomb(levels, fanout, leaf);
            assert_eq!(
                loads(&bomb),
                Err(PickleError::Expands {
                    limit: MAX_EXPANDED_BYTES
                }),
                "{levels} levels of {fanout}"
            );
        }
        // The same shape, small enough, loads: sharing is fine, expanding past the bound is not.
        let small = loads(&memo_bomb(3, 2, 1)).unwrap();
        assert_eq!(
            small["k"],
            serde_json::json!([[["x", "x"], ["x", "x"]], [["x", "x"], ["x", "x"]]])
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_building() {
        let nest = |depth: usize| {
            let mut out = b"\x80\x02}X\x01\x00\x00\x00k".to_vec();
            out.extend(std::iter::repeat_n(b'(', depth));
            out.push(b'N');
            out.extend(std::iter::repeat_n(b'l', depth));
            out.extend_from_slice(b"s.");
            out
        };
        assert_eq!(
            loads(&nest(100_000)),
            Err(PickleError::NotJson("nested too deep"))
        );
        assert!(
            loads(&nest(MAX_DEPTH - 1)).is_ok(),
            "the dict and its lists: {MAX_DEPTH} levels"
        );
        assert!(loads(&nest(MAX_DEPTH)).is_err());
    }

    #[test]
    fn input_over_the_byte_bound_is_refused_before_reading() {
        let long = vec![b'N'; MAX_PICKLE_BYTES + 1];
        assert!(matches!(loads(&long), Err(PickleError::TooLong { .. })));
    }
}
