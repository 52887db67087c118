//! Response bodies that hand their buffer back to a pool once hyper has written it.
//!
//! A scrape encodes into a `Vec<u8>` taken from a pool. Converting it to `Bytes` would give the
//! allocation away; instead the body's data chunk owns the `Vec` and returns it to the pool when
//! hyper drops the chunk, i.e. after the bytes have been written or the connection has gone.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use hyper::body::{Buf, Frame, SizeHint};

/// A small bounded stack of reusable values.
///
/// The lock is held only to push or pop one value, never across an await and never while a
/// socket is written, so it cannot stall a scrape behind another.
pub(crate) struct Pool<T> {
    items: Mutex<Vec<T>>,
    keep: usize,
}

impl<T> Pool<T> {
    /// A pool that retains at most `keep` idle values; extra ones are dropped.
    pub(crate) fn new(keep: usize) -> Self {
        Pool {
            items: Mutex::new(Vec::with_capacity(keep)),
            keep,
        }
    }

    /// An idle value, if any.
    pub(crate) fn take(&self) -> Option<T> {
        // A panic while holding the lock cannot leave a stack of values inconsistent.
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    /// Returns a value for reuse.
    pub(crate) fn give(&self, item: T) {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        if items.len() < self.keep {
            items.push(item);
        }
    }

    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.items.lock().unwrap().len()
    }
}

/// A byte buffer that goes back to its pool (cleared, capacity kept) when dropped.
pub(crate) struct PooledVec {
    vec: Vec<u8>,
    pool: Option<Arc<Pool<Vec<u8>>>>,
}

impl PooledVec {
    /// A buffer from `pool`, or a fresh one when the pool is empty.
    pub(crate) fn take(pool: &Arc<Pool<Vec<u8>>>) -> Self {
        PooledVec {
            vec: pool.take().unwrap_or_default(),
            pool: Some(Arc::clone(pool)),
        }
    }

    /// A buffer that is simply freed when dropped.
    pub(crate) fn unpooled(vec: Vec<u8>) -> Self {
        PooledVec { vec, pool: None }
    }
}

impl std::ops::Deref for PooledVec {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.vec
    }
}

impl std::ops::DerefMut for PooledVec {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.vec
    }
}

impl Drop for PooledVec {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let mut vec = std::mem::take(&mut self.vec);
            vec.clear();
            pool.give(vec);
        }
    }
}

/// The data of a response: static bytes or an owned (possibly pooled) buffer with a read cursor.
pub(crate) enum Chunk {
    Static(&'static [u8]),
    Owned { buf: PooledVec, pos: usize },
}

impl Buf for Chunk {
    fn remaining(&self) -> usize {
        self.chunk().len()
    }

    fn chunk(&self) -> &[u8] {
        match self {
            Chunk::Static(bytes) => bytes,
            Chunk::Owned { buf, pos } => &buf[*pos..],
        }
    }

    fn advance(&mut self, cnt: usize) {
        assert!(cnt <= self.remaining(), "advance past the end of a chunk");
        match self {
            Chunk::Static(bytes) => *bytes = &bytes[cnt..],
            Chunk::Owned { pos, .. } => *pos += cnt,
        }
    }
}

/// A whole response body sent as at most one data frame.
///
/// `hold` keeps something alive until hyper has consumed the body: the metrics handler parks
/// its scrape permit there so the concurrency cap also bounds buffers still being sent.
pub(crate) struct Body {
    chunk: Option<Chunk>,
    hold: Option<Box<dyn Send + Sync>>,
}

impl Body {
    /// No body at all.
    pub(crate) fn empty() -> Self {
        Body {
            chunk: None,
            hold: None,
        }
    }

    /// A body of static bytes.
    pub(crate) fn from_static(bytes: &'static [u8]) -> Self {
        Self::from_chunk(Chunk::Static(bytes))
    }

    /// A body of an owned buffer.
    pub(crate) fn from_vec(buf: PooledVec) -> Self {
        Self::from_chunk(Chunk::Owned { buf, pos: 0 })
    }

    /// A body of a message built at run time.
    pub(crate) fn from_string(text: String) -> Self {
        Self::from_vec(PooledVec::unpooled(text.into_bytes()))
    }

    fn from_chunk(chunk: Chunk) -> Self {
        Body {
            // An empty data frame would be legal but pointless; size_hint stays exact either way.
            chunk: (chunk.remaining() > 0).then_some(chunk),
            hold: None,
        }
    }

    /// Keeps `value` alive until the body has been consumed or dropped.
    pub(crate) fn holding(mut self, value: impl Send + Sync + 'static) -> Self {
        self.hold = Some(Box::new(value));
        self
    }

    /// The bytes still to be sent (test helper).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        self.chunk.as_ref().map_or(&[], Buf::chunk)
    }
}

impl hyper::body::Body for Body {
    type Data = Chunk;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Chunk>, Infallible>>> {
        let this = self.get_mut();
        let frame = this.chunk.take().map(|chunk| Ok(Frame::data(chunk)));
        if frame.is_none() {
            this.hold = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.chunk.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.chunk.as_ref().map_or(0, |c| c.remaining() as u64))
    }
}

/// A plain-text response, marked so browsers never sniff it into something executable.
pub(crate) fn plain_text(status: hyper::StatusCode, body: Body) -> hyper::Response<Body> {
    use hyper::header::{HeaderValue, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// 405 for a method a route does not serve, naming the ones it does.
pub(crate) fn method_not_allowed(allow: &'static str) -> hyper::Response<Body> {
    let mut response = plain_text(
        hyper::StatusCode::METHOD_NOT_ALLOWED,
        Body::from_static(b"Method Not Allowed\n"),
    );
    response.headers_mut().insert(
        hyper::header::ALLOW,
        hyper::header::HeaderValue::from_static(allow),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_vec_returns_cleared_with_capacity() {
        let pool = Arc::new(Pool::new(2));
        let mut buf = PooledVec::take(&pool);
        buf.extend_from_slice(&[1; 1000]);
        drop(buf);
        assert_eq!(pool.idle(), 1);
        let again = PooledVec::take(&pool);
        assert!(again.is_empty());
        assert!(again.capacity() >= 1000);
    }

    #[test]
    fn pool_keeps_at_most_its_bound() {
        let pool = Arc::new(Pool::new(1));
        let a = PooledVec::take(&pool);
        let b = PooledVec::take(&pool);
        drop(a);
        drop(b);
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn chunk_advances_through_its_bytes() {
        let mut c = Chunk::Owned {
            buf: PooledVec::unpooled(b"hello".to_vec()),
            pos: 0,
        };
        c.advance(2);
        assert_eq!(c.chunk(), b"llo");
        assert_eq!(c.remaining(), 3);
        let mut s = Chunk::Static(b"abc");
        s.advance(3);
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn empty_body_has_exact_zero_size() {
        use hyper::body::Body as _;
        let b = Body::from_static(b"");
        assert!(b.is_end_stream());
        assert_eq!(b.size_hint().exact(), Some(0));
        assert_eq!(Body::from_static(b"abc").size_hint().exact(), Some(3));
    }
}
