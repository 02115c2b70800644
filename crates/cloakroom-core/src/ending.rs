//! The future an adapter's middleware returns for a request: the handler's future, then the end
//! of the session, written once for every adapter. An adapter says only how to read its
//! handler's status and how to apply the end to its response ([`Respond`]).
//!
//! Not boxed: the handler's future runs in place, and a request whose end asks nothing of the
//! store (its session unused or only read) finishes in the same poll that sees the response,
//! without another future or allocation; only a save is boxed ([`LazySession::finishing`]).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use crate::finish::{Finishing, ResponseHeaders};
use crate::manager::LazySession;

/// What an adapter tells [`Ending`] about its responses: implemented on a marker type of the
/// adapter's (`http` 1 responses have [`HttpResponses`]).
pub trait Respond {
    /// The handler's response.
    type Response;
    /// The response the adapter sends.
    type Output;

    /// The handler's status code: the end of the request saves nothing on a 5xx.
    fn status(response: &Self::Response) -> u16;

    /// The response that goes out: the handler's with `ended`'s headers appended, or the
    /// replacement that `ended` carries when the save failed.
    fn respond(
        response: Self::Response,
        ended: Result<ResponseHeaders, http::Response<String>>,
    ) -> Self::Output;
}

/// [`Respond`] for `http` 1 responses (tower, axum, hyper): the headers are appended, and a
/// replacement takes the handler's body type.
#[derive(Debug)]
pub struct HttpResponses<B>(PhantomData<fn() -> B>);

impl<B: From<String>> Respond for HttpResponses<B> {
    type Response = http::Response<B>;
    type Output = http::Response<B>;

    fn status(response: &Self::Response) -> u16 {
        response.status().as_u16()
    }

    fn respond(
        mut response: Self::Response,
        ended: Result<ResponseHeaders, http::Response<String>>,
    ) -> Self::Output {
        match ended {
            Ok(added) => {
                let headers = response.headers_mut();
                for (name, value) in added {
                    headers.append(name, value);
                }
                response
            }
            Err(replacement) => replacement.map(B::from),
        }
    }
}

/// The boxed save of [`Finishing::Saving`].
type Saving = Pin<Box<dyn Future<Output = Result<ResponseHeaders, http::Response<String>>> + Send>>;

pin_project! {
    /// A request's handler, then the end of its session ([`LazySession::finishing`]), as one
    /// future; `A` says how the adapter's responses take the end ([`Respond`]).
    ///
    /// An error from the handler's future is not a response yet: it passes through, and
    /// nothing is saved.
    pub struct Ending<F, A: Respond> {
        #[pin]
        state: State<F, A::Response>,
        session: LazySession,
        adapter: PhantomData<fn() -> A>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, R> {
        Handler {
            #[pin]
            handler: F,
        },
        Saving {
            saving: Saving,
            response: Option<R>,
        },
        Done,
    }
}

impl<F, A: Respond> Ending<F, A> {
    /// The handler's future `handler`, then the end of `session` once it has answered.
    pub fn new(handler: F, session: LazySession) -> Self {
        Self {
            state: State::Handler { handler },
            session,
            adapter: PhantomData,
        }
    }
}

impl<F, A: Respond> std::fmt::Debug for Ending<F, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Handler { .. } => "handler",
            State::Saving { .. } => "saving",
            State::Done => "done",
        };
        f.debug_struct("Ending")
            .field("state", &state)
            .field("session", &self.session)
            .finish()
    }
}

impl<F, A, E> Future for Ending<F, A>
where
    F: Future<Output = Result<A::Response, E>>,
    A: Respond,
{
    type Output = Result<A::Output, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut state = this.state;
        loop {
            match state.as_mut().project() {
                StateProj::Handler { handler } => {
                    let response = ready!(handler.poll(cx))?;
                    match this.session.finishing(A::status(&response)) {
                        Finishing::Ready(ended) => {
                            state.set(State::Done);
                            return Poll::Ready(Ok(A::respond(response, ended)));
                        }
                        Finishing::Saving(saving) => state.set(State::Saving {
                            saving,
                            response: Some(response),
                        }),
                    }
                }
                StateProj::Saving { saving, response } => {
                    let ended = ready!(saving.as_mut().poll(cx));
                    let response = response.take();
                    state.set(State::Done);
                    return match response {
                        Some(response) => Poll::Ready(Ok(A::respond(response, ended))),
                        None => Poll::Pending,
                    };
                }
                // Polled after it answered: a caller's bug, which never answers twice.
                StateProj::Done => return Poll::Pending,
            }
        }
    }
}
