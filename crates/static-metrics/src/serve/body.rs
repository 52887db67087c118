//! Response bodies that hand their buffer back to a pool once hyper has written it.
//!
//! A scrape encodes into a `Vec<u8>` taken from a pool. Converting it to `Bytes` would give the
//! allocation away; instead the body's `Bytes` frame owns the `Vec` (`Bytes::from_owner`) and
//! returns it to the pool when dropped, i.e. after the bytes have been written or the connection
//! has gone.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

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
    #[cfg_attr(not(feature = "pprof"), allow(dead_code))]
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

impl AsRef<[u8]> for PooledVec {
    fn as_ref(&self) -> &[u8] {
        &self.vec
    }
}

/// The body of every response the metrics service and the servers send: the whole payload as
/// at most one [`Bytes`] frame, so it plugs into hyper, tower and axum alike (`Data = Bytes`,
/// never an error).
///
/// The exposition's buffer is not copied into the `Bytes`: the frame owns the pooled buffer
/// and hands it back to the pool once the frame is dropped, i.e. after the bytes have been
/// written or the connection has gone. The body can also hold something until it is consumed:
/// the metrics service parks its scrape permit there, so the concurrency cap also bounds
/// buffers still being sent.
pub struct Body {
    data: Option<Bytes>,
    hold: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("len", &self.data.as_ref().map_or(0, Bytes::len))
            .finish_non_exhaustive()
    }
}

impl Body {
    /// No body at all.
    pub(crate) fn empty() -> Self {
        Body {
            data: None,
            hold: None,
        }
    }

    /// A body of static bytes.
    pub(crate) fn from_static(bytes: &'static [u8]) -> Self {
        Self::from_bytes(Bytes::from_static(bytes))
    }

    /// A body of an owned buffer (a pooled one goes back to its pool after sending).
    pub(crate) fn from_vec(buf: PooledVec) -> Self {
        if buf.pool.is_none() {
            return Self::from_bytes(Bytes::from(std::mem::take(&mut { buf }.vec)));
        }
        Self::from_bytes(Bytes::from_owner(buf))
    }

    /// A body of a message built at run time.
    pub(crate) fn from_string(text: String) -> Self {
        Self::from_bytes(Bytes::from(text))
    }

    fn from_bytes(data: Bytes) -> Self {
        Body {
            // An empty data frame would be legal but pointless; size_hint stays exact either way.
            data: (!data.is_empty()).then_some(data),
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
        self.data.as_deref().unwrap_or_default()
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let frame = this.data.take().map(|data| Ok(Frame::data(data)));
        if frame.is_none() {
            this.hold = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
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
    fn pooled_body_returns_its_buffer_once_the_frame_is_dropped() {
        use hyper::body::Body as _;
        let pool = Arc::new(Pool::new(2));
        let mut buf = PooledVec::take(&pool);
        buf.extend_from_slice(b"hello");
        let mut body = std::pin::pin!(Body::from_vec(buf));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(&mut cx) else {
            panic!("one data frame");
        };
        let data = frame.into_data().unwrap();
        assert_eq!(&data[..], b"hello");
        assert_eq!(pool.idle(), 0, "still owned by the frame");
        drop(data);
        assert_eq!(pool.idle(), 1);
        assert!(matches!(
            body.as_mut().poll_frame(&mut cx),
            Poll::Ready(None)
        ));
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
