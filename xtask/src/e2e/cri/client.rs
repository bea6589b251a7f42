//! A blocking CRI client over containerd's socket: the generated tonic clients of `k8s-cri`, each
//! call run to its end on a one-thread tokio runtime, and bounded.

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// The longest any call may take: a stopped container's grace period is the longest wait the
/// suite asks for (seconds), so a call past this is hung.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Cri {
    tokio: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl Cri {
    pub fn connect(socket: &Path) -> Result<Cri, String> {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("CRI client: tokio runtime: {e}"))?;
        let path = socket.to_owned();
        let channel = tokio
            .block_on(async move {
                // The URI is not used: every connection goes to the socket.
                Endpoint::try_from("http://[::]")?
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                        }
                    }))
                    .await
            })
            .map_err(|e| format!("CRI client: connect to {}: {e}", socket.display()))?;
        Ok(Cri {
            tokio,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// One call of the RuntimeService: `cri.runtime(|mut c| async move { c.version(req).await })`.
    pub fn runtime<T, Fut>(
        &self,
        call: impl FnOnce(RuntimeServiceClient<Channel>) -> Fut,
    ) -> Result<T, CallError>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.block(call(self.runtime.clone()))
    }

    /// One call of the ImageService.
    pub fn images<T, Fut>(
        &self,
        call: impl FnOnce(ImageServiceClient<Channel>) -> Fut,
    ) -> Result<T, CallError>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.block(call(self.images.clone()))
    }

    fn block<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CallError> {
        self.tokio.block_on(async {
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(answer) => answer
                    .map(tonic::Response::into_inner)
                    .map_err(|status| CallError {
                        code: status.code(),
                        message: status.message().to_owned(),
                    }),
                Err(_) => Err(CallError {
                    code: tonic::Code::DeadlineExceeded,
                    message: format!("no answer within {CALL_TIMEOUT:?}"),
                }),
            }
        })
    }
}

/// A call's error: its gRPC code and containerd's message (what of a `tonic::Status` the suite
/// looks at).
#[derive(Debug)]
pub struct CallError {
    pub code: tonic::Code,
    pub message: String,
}

/// A call's error in one line: the code and containerd's message.
pub fn describe(error: &CallError) -> String {
    format!("{:?}: {}", error.code, error.message)
}
