"""Draw digits through the Open Inference Protocol: the same script against `mnist-gen serve` and against
Triton serving the repository `python -m exporter ... --triton-repo models/` writes.

    pip install "tritonclient[http]" pillow numpy
    python examples/oip_client.py localhost:8000 [--digit 7] [--n 16] [--seed 0] [--out digits.png]
"""

import argparse

import numpy as np
import tritonclient.http as httpclient
from PIL import Image

parser = argparse.ArgumentParser()
parser.add_argument("url", help="host:port of the server (mnist-gen serve, or Triton's HTTP port)")
parser.add_argument("--digit", type=int, default=7)
parser.add_argument("--n", type=int, default=16)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default="digits.png")
args = parser.parse_args()

client = httpclient.InferenceServerClient(args.url)
assert client.is_server_ready() and client.is_model_ready("mnist_gen")
latent_dim = client.get_model_metadata("mnist_gen")["inputs"][0]["shape"][1]

z = httpclient.InferInput("z", [args.n, latent_dim], "FP32")
z.set_data_from_numpy(np.random.default_rng(args.seed).standard_normal((args.n, latent_dim), dtype=np.float32))
labels = httpclient.InferInput("labels", [args.n, 1], "INT64")
labels.set_data_from_numpy(np.full((args.n, 1), args.digit, np.int64))
images = client.infer("mnist_gen", [z, labels]).as_numpy("images")  # FP32 [n, 1, 28, 28] in [-1, 1]

pixels = np.clip(np.rint((images[:, 0] + 1) * 127.5), 0, 255).astype(np.uint8)
Image.fromarray(np.concatenate(list(pixels), axis=1)).save(args.out)
print(f"wrote {args.out}: {args.n} images of digit {args.digit} from {args.url}")
