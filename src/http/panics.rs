//! No panic reaches a client as a torn answer.
//!
//! A panic inside a handler becomes a logged `500` problem ([`super::error::panic_to_problem`],
//! through `CatchPanicLayer`). A panic while a response body is being produced — after the
//! status line has gone — cannot become a `500` any more: [`guard_body`] catches it, logs
//! it, and ends the body with an error, so the connection closes short of its
//! `Content-Length` (the client knows the transfer failed) and the process keeps serving.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// Wraps every response body so a panic while polling it is caught (see the module).
pub async fn guard_body(response: Response) -> Response {
    response.map(|body| {
        Body::new(Guarded {
            inner: body,
            failed: false,
        })
    })
}

struct Guarded {
    inner: Body,
    failed: bool,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let inner = &mut self.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll_frame(cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                self.failed = true;
                tracing::error!(
                    panic = %super::error::panic_message(panic.as_ref()),
                    "a response body panicked; the connection is closed"
                );
                Poll::Ready(Some(Err(axum::Error::new("the response body failed"))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    #[tokio::test]
    async fn a_panicking_body_ends_with_an_error_then_stays_ended() {
        let mut polled = 0;
        let stream = futures_util::stream::poll_fn(move |_| {
            polled += 1;
            if polled == 1 {
                Poll::Ready(Some(Ok::<_, std::io::Error>(Bytes::from_static(b"head"))))
            } else {
                panic!("a body that breaks")
            }
        });
        let response = guard_body(Response::new(Body::from_stream(stream))).await;
        let mut frames = response.into_body().into_data_stream();
        assert_eq!(frames.next().await.unwrap().unwrap(), "head");
        assert!(frames.next().await.unwrap().is_err());
        assert!(frames.next().await.is_none());
        assert!(frames.next().await.is_none());
    }
}
