#!/usr/bin/env python3
"""Export a Stable Diffusion model, its ControlNets and annotators to the worker's split ONNX layout.

Run on a machine with internet access (Hugging Face Hub) and, for --fp16, a CUDA GPU:

    pip install -r requirements.txt
    python export.py --base runwayml/stable-diffusion-v1-5 \
        --controlnet canny=lllyasviel/sd-controlnet-canny \
        --controlnet depth=lllyasviel/sd-controlnet-depth \
        --annotator depth --annotator hed --out ./sd15-controlnet-onnx

then copy the folder to the worker's MODEL_DIR (or the S3 prefix it syncs from); annotators go to
<out>/annotators/<name>/model.onnx (the worker's ANNOTATOR_DIR). The layout, and the name, shape and
dtype of every input and output, are in docs/onnx-layouts.md; the names come from contract.json beside
this script, which the worker's tests check against the graphs the worker reads.

The UNet is wrapped to take the ControlNet residuals as inputs (down_block_additional_residuals and
mid_block_additional_residual of diffusers' UNet2DConditionModel.forward); each ControlNet is exported
with all its residual outputs named. Batch, height and width are dynamic axes, but the graph is traced at
the model's sample_size: the UNet upsamples by a fixed factor 2, so it takes only sizes whose latent
halves evenly at every level (multiples of contract["size_multiple"] pixels).
"""

import argparse
import inspect
import json
import shutil
from pathlib import Path

import onnx
import torch
from diffusers import AutoencoderKL, ControlNetModel, DiffusionPipeline

HERE = Path(__file__).resolve().parent
# The TorchScript exporter takes dynamic_axes; torch releases that have a dynamo exporter get it off.
LEGACY = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
CONTRACT = json.loads((HERE / "contract.json").read_text())

# controlnet_aux detectors whose network is a torch module: worker annotator name -> (class, attribute
# path of the network). The graph is the network as it is; the worker does controlnet_aux's pre- and
# post-processing (worker/src/annotators).
ANNOTATORS = {
    "depth": ("MidasDetector", "model"),
    "hed": ("HEDdetector", "netNetwork"),
    "softedge": ("PidiNetDetector", "netNetwork"),
    "lineart": ("LineartDetector", "model"),
    "mlsd": ("MLSDdetector", "model"),
    "normal": ("NormalBaeDetector", "model"),
    "openpose": ("OpenposeDetector", "body_estimation.model"),
}
ANNOTATOR_REPO = "lllyasviel/Annotators"


def indexed(pattern, n):
    return [pattern.replace("{i}", str(i)) for i in range(n)]


def export(module, args, path, input_names, output_names, dynamic_axes, opset):
    """torch.onnx.export (TorchScript exporter), then the weights in one external file (UNets pass 2 GB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / "_export"
    tmp.mkdir(exist_ok=True)
    with torch.inference_mode():
        torch.onnx.export(
            module,
            args,
            (tmp / "model.onnx").as_posix(),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
            opset_version=opset,
            **LEGACY,
        )
    model = onnx.load((tmp / "model.onnx").as_posix())
    onnx.save_model(
        model,
        path.as_posix(),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.pb",
    )
    shutil.rmtree(tmp)
    # The names are the contract: check what was written.
    written = onnx.load(path.as_posix(), load_external_data=False)
    got_in = [i.name for i in written.graph.input]
    got_out = [o.name for o in written.graph.output]
    if got_in != input_names or got_out != output_names:
        raise RuntimeError(f"{path}: inputs {got_in}, outputs {got_out}; expected {input_names}, {output_names}")
    print(f"wrote {path}")


def residual_shapes(unet, size):
    """(channels, latent size) of each down residual and of the mid residual, from the UNet's config."""
    channels = list(unet.config.block_out_channels)
    layers = unet.config.layers_per_block
    layers = layers if isinstance(layers, (list, tuple)) else [layers] * len(channels)
    down = [(channels[0], size)]
    for i, ch in enumerate(channels):
        down += [(ch, size >> i)] * layers[i]
        if i < len(channels) - 1:
            down.append((ch, size >> (i + 1)))
    return down, (channels[-1], size >> (len(channels) - 1))


def level_of(size, latent):
    return (size // latent).bit_length() - 1


class TextEncoder(torch.nn.Module):
    """Every hidden state as an output (clip_skip needs them), after the contract's named outputs."""

    def __init__(self, encoder, with_projection):
        super().__init__()
        self.encoder = encoder
        self.with_projection = with_projection

    def forward(self, input_ids):
        out = self.encoder(input_ids, output_hidden_states=True, return_dict=True)
        first = out.text_embeds if self.with_projection else out.last_hidden_state
        second = out.last_hidden_state if self.with_projection else out.pooler_output
        return (first, second, *out.hidden_states)


class UNetWithResiduals(torch.nn.Module):
    def __init__(self, unet, n_down, sdxl):
        super().__init__()
        self.unet, self.n_down, self.sdxl = unet, n_down, sdxl

    def forward(self, sample, timestep, encoder_hidden_states, *rest):
        added = None
        if self.sdxl:
            added = {"text_embeds": rest[0], "time_ids": rest[1]}
            rest = rest[2:]
        return self.unet(
            sample,
            timestep,
            encoder_hidden_states,
            added_cond_kwargs=added,
            down_block_additional_residuals=tuple(rest[: self.n_down]),
            mid_block_additional_residual=rest[self.n_down],
            return_dict=False,
        )[0]


class ControlNetResiduals(torch.nn.Module):
    def __init__(self, controlnet, sdxl):
        super().__init__()
        self.controlnet, self.sdxl = controlnet, sdxl

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale, *added):
        kwargs = {"added_cond_kwargs": {"text_embeds": added[0], "time_ids": added[1]}} if self.sdxl else {}
        down, mid = self.controlnet(
            sample,
            timestep,
            encoder_hidden_states=encoder_hidden_states,
            controlnet_cond=controlnet_cond,
            conditioning_scale=conditioning_scale,
            return_dict=False,
            **kwargs,
        )
        return (*down, mid)


class VaeEncoder(torch.nn.Module):
    """The latent distribution's parameters (mean, log-variance): the worker samples with the job's seed."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return self.vae.encode(sample).latent_dist.parameters


class VaeDecoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample).sample


def export_annotator(name, out, opset, device):
    import controlnet_aux

    if name not in ANNOTATORS:
        raise SystemExit(f"annotator {name}: not exportable by this tool (exportable: {', '.join(ANNOTATORS)})")
    cls_name, attribute = ANNOTATORS[name]
    detector = getattr(controlnet_aux, cls_name).from_pretrained(ANNOTATOR_REPO)
    network = detector
    for part in attribute.split("."):
        network = getattr(network, part)
    network = network.float().eval().to(device)
    # M-LSD takes RGB and a plane of ones (4 channels; mlsd/utils.py pred_lines); the others RGB.
    image = torch.rand(1, 4 if name == "mlsd" else 3, 512, 512, device=device)
    with torch.inference_mode():
        outputs = network(image)
    count = len(outputs) if isinstance(outputs, (list, tuple)) else 1
    names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
    axes = {CONTRACT["annotator"]["inputs"][0]: {2: "height", 3: "width"}}
    export(network, (image,), out / "annotators" / name / "model.onnx", CONTRACT["annotator"]["inputs"], names, axes, opset)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="diffusers model id or folder (SD 1.x/2.x or SDXL)")
    parser.add_argument("--controlnet", action="append", default=[], metavar="NAME=ID",
                        help="a ControlNet, as the name jobs use (controlnet_model) = diffusers model id or folder")
    parser.add_argument("--annotator", action="append", default=[], choices=sorted(ANNOTATORS))
    parser.add_argument("--vae", help="another VAE (e.g. an fp16-safe one for SDXL)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--fp16", action="store_true", help="float16 weights and tensors (needs CUDA)")
    args = parser.parse_args()

    if args.fp16 and not torch.cuda.is_available():
        raise SystemExit("--fp16 needs a CUDA GPU")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if args.fp16 else torch.float32
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    extra = {"vae": AutoencoderKL.from_pretrained(args.vae, torch_dtype=dtype)} if args.vae else {}
    pipe = DiffusionPipeline.from_pretrained(args.base, torch_dtype=dtype, **extra).to(device)
    unet = pipe.unet.eval()
    sdxl = getattr(unet.config, "addition_embed_type", None) == "text_time"
    size = unet.config.sample_size
    if size % 8:
        raise SystemExit(f"sample_size {size}: the trace needs a latent size that is a multiple of 8")

    # Tokenizers, scheduler and configs the worker reads.
    pipe.tokenizer.save_pretrained(out / "tokenizer")
    pipe.scheduler.save_pretrained(out / "scheduler")
    (out / "vae_decoder").mkdir(exist_ok=True)
    (out / "vae_decoder" / "config.json").write_text(json.dumps(dict(pipe.vae.config), indent=2))
    (out / "text_encoder").mkdir(exist_ok=True)
    (out / "text_encoder" / "config.json").write_text(pipe.text_encoder.config.to_json_string())
    index = {"_class_name": "WorkerSplitLayout", "base": args.base, "controlnets": [c.split("=")[0] for c in args.controlnet]}
    if sdxl:
        pipe.tokenizer_2.save_pretrained(out / "tokenizer_2")
        index["force_zeros_for_empty_prompt"] = bool(pipe.config.get("force_zeros_for_empty_prompt", True))
    (out / "model_index.json").write_text(json.dumps(index, indent=2))

    batch = 2
    ids = torch.zeros(batch, pipe.tokenizer.model_max_length, dtype=torch.int64, device=device)
    encoders = [("text_encoder", pipe.text_encoder, False)]
    if sdxl:
        encoders.append(("text_encoder_2", pipe.text_encoder_2, True))
    for folder, encoder, projection in encoders:
        c = CONTRACT[folder]
        layers = encoder.config.num_hidden_layers
        names = c["outputs"] + indexed(c["hidden_states"], layers + 1)
        axes = {n: {0: "batch"} if n in ("pooler_output", "text_embeds") else {0: "batch", 1: "sequence"}
                for n in [c["inputs"][0], *names]}
        export(TextEncoder(encoder.eval(), projection), (ids,), out / folder / "model.onnx", c["inputs"], names, axes, args.opset)

    # UNet with residual inputs.
    down_shapes, mid_shape = residual_shapes(unet, size)
    expected = CONTRACT["residual_count"]["sdxl" if sdxl else "sd"]
    if len(down_shapes) != expected:
        raise SystemExit(f"{len(down_shapes)} down residuals; the worker expects {expected} for this kind of model")
    u = CONTRACT["unet"]
    hidden = unet.config.cross_attention_dim
    sample = torch.randn(batch, unet.config.in_channels, size, size, device=device, dtype=dtype)
    timestep = torch.tensor([500.0], device=device)
    ehs = torch.randn(batch, pipe.tokenizer.model_max_length, hidden, device=device, dtype=dtype)
    added_names = u["sdxl_inputs"] if sdxl else []
    added = []
    if sdxl:
        projection = pipe.text_encoder_2.config.projection_dim
        added = [torch.randn(batch, projection, device=device, dtype=dtype),
                 torch.tensor([[size * 8, size * 8, 0, 0, size * 8, size * 8]] * batch, device=device, dtype=dtype)]
    down_names = indexed(u["down_residual"], len(down_shapes))
    residuals = [torch.randn(batch, ch, s, s, device=device, dtype=dtype) for ch, s in [*down_shapes, mid_shape]]
    axes = {"sample": {0: "batch", 2: "height", 3: "width"}, u["outputs"][0]: {0: "batch", 2: "height", 3: "width"},
            "encoder_hidden_states": {0: "batch"}, **{n: {0: "batch"} for n in added_names}}
    for name, (_, s) in zip([*down_names, u["mid_residual"]], [*down_shapes, mid_shape]):
        level = level_of(size, s)
        axes[name] = {0: "batch", 2: f"height_{level}", 3: f"width_{level}"}
    export(UNetWithResiduals(unet, len(down_shapes), sdxl), (sample, timestep, ehs, *added, *residuals),
           out / "unet" / "model.onnx", u["inputs"] + added_names + down_names + [u["mid_residual"]],
           u["outputs"], axes, args.opset)

    # One folder per ControlNet, every residual output named.
    c = CONTRACT["controlnet"]
    for spec in args.controlnet:
        name, _, source = spec.partition("=")
        if not name or not source:
            raise SystemExit(f"--controlnet {spec}: expected NAME=ID")
        controlnet = ControlNetModel.from_pretrained(source, torch_dtype=dtype).to(device).eval()
        # A ControlNet takes the 4 latent channels even beside a 9-channel inpainting UNet.
        cn_sample = torch.randn(batch, controlnet.config.in_channels, size, size, device=device, dtype=dtype)
        cond = torch.rand(batch, 3, size * 8, size * 8, device=device, dtype=dtype)
        scale = torch.tensor(1.0, device=device, dtype=dtype)
        outputs = indexed(c["down_residual"], len(down_shapes)) + [c["mid_residual"]]
        cn_axes = {"sample": {0: "batch", 2: "height", 3: "width"}, "encoder_hidden_states": {0: "batch"},
                   "controlnet_cond": {0: "batch", 2: "image_height", 3: "image_width"},
                   **{n: {0: "batch"} for n in added_names}}
        for n, (_, s) in zip(outputs, [*down_shapes, mid_shape]):
            level = level_of(size, s)
            cn_axes[n] = {0: "batch", 2: f"height_{level}", 3: f"width_{level}"}
        export(ControlNetResiduals(controlnet, sdxl), (cn_sample, timestep, ehs, cond, scale, *added),
               out / "controlnet" / name / "model.onnx", c["inputs"] + added_names, outputs, cn_axes, args.opset)
        del controlnet

    # VAE.
    vae = pipe.vae.eval()
    image = torch.randn(1, 3, size * 8, size * 8, device=device, dtype=dtype)
    e, d = CONTRACT["vae_encoder"], CONTRACT["vae_decoder"]
    export(VaeEncoder(vae), (image,), out / "vae_encoder" / "model.onnx", e["inputs"], e["outputs"],
           {e["inputs"][0]: {0: "batch", 2: "image_height", 3: "image_width"},
            e["outputs"][0]: {0: "batch", 2: "height", 3: "width"}}, args.opset)
    latent = torch.randn(1, vae.config.latent_channels, size, size, device=device, dtype=dtype)
    export(VaeDecoder(vae), (latent,), out / "vae_decoder" / "model.onnx", d["inputs"], d["outputs"],
           {d["inputs"][0]: {0: "batch", 2: "height", 3: "width"},
            d["outputs"][0]: {0: "batch", 2: "image_height", 3: "image_width"}}, args.opset)

    for name in args.annotator:
        export_annotator(name, out, args.opset, device)
    print(f"done: {out}")


if __name__ == "__main__":
    main()
