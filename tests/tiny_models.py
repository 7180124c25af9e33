"""Tiny randomly initialised multimodal models, with processors and tokenizers built offline and
saved to a folder, so tests load them back through ``from_pretrained`` as a user's checkpoint."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "Alice Bob Carol Dana Speaker speaker who is talking to whom",
    "Good morning everyone, thanks for joining today. Happy to be here.",
    "Shall we start with the launch schedule? Yes, the engineers finished the final checks.",
    "The forecast is clear for the whole week. This is mission control. All systems are ready.",
    "Question: Answer: Options: 0123456789 [00:12-00:15] A B C D E",
    "user assistant system You are a helpful assistant.",
]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|video_pad|>", "<|image_pad|>"]
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_level_tokenizer(specials: list[str], cls=None, vocab_size: int = 600):
    """A small byte-level BPE tokenizer (any text encodes; offsets are exact) as a fast HF tokenizer of
    class ``cls`` (default PreTrainedTokenizerFast)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    return (cls or PreTrainedTokenizerFast)(tokenizer_object=tokenizer, eos_token=specials[0], pad_token=specials[0],
                                            unk_token=None, additional_special_tokens=specials[1:])


def text_config(vocab_size: int, layers: int, hidden: int, heads: int, kv_heads: int) -> dict:
    """The tiny language model every family here shares."""
    return {"vocab_size": vocab_size, "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "max_position_embeddings": 4096}


def save_checkpoint(model_class, config, processor, folder: Path, head_std: float | None = None) -> Path:
    """Initialise ``model_class`` from ``config`` (seeded) and save it with its processor, as a checkpoint folder.
    ``head_std`` re-draws the output head with that spread: at the default 0.02 a 64-wide random model's
    logits span about +-1.3, so no next token can get much probability whatever the layers below learn
    (training tests need a head that can express a confident answer, as a real model's can)."""
    import torch

    torch.manual_seed(0)
    model = model_class(config).eval()
    if head_std is not None:
        with torch.no_grad():
            model.get_output_embeddings().weight.normal_(0.0, head_std)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def qwen2_5_vl(folder: Path, layers: int = 4, hidden: int = 64, heads: int = 4, kv_heads: int = 2,
               head_std: float | None = None) -> Path:
    """A tiny Qwen2.5-VL checkpoint folder (model, processor, tokenizer, chat template)."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2TokenizerFast, Qwen2VLImageProcessor)
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer = byte_level_tokenizer(QWEN_SPECIALS, Qwen2TokenizerFast)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    size = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 64}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        video_processor=Qwen2VLVideoProcessor(size=size, do_sample_frames=False),
        tokenizer=tokenizer, chat_template=QWEN_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config={**text_config(len(tokenizer), layers, hidden, heads, kv_heads),
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": hidden,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                       "fullatt_block_indexes": [1]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    return save_checkpoint(Qwen2_5_VLForConditionalGeneration, config, processor, folder, head_std)


LLAVA_SPECIALS = ["</s>", "<s>", "<unk>", "<video>", "<image>"]
LLAVA_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() }}: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'video' %}<video>\n"
    "{% elif part['type'] == 'image' %}<image>\n{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def llava_next_video(folder: Path, layers: int = 4, hidden: int = 64, heads: int = 4, kv_heads: int = 2,
                     crop: int = 112, head_std: float | None = None) -> Path:
    """A tiny LLaVA-NeXT-Video checkpoint folder: frames resized (short side) and centre-cropped to ``crop``,
    14 px patches pooled 2x2."""
    from transformers import (LlamaTokenizerFast, LlavaNextImageProcessor, LlavaNextVideoConfig,
                              LlavaNextVideoForConditionalGeneration, LlavaNextVideoProcessor)
    from transformers.models.llava_next_video.video_processing_llava_next_video import LlavaNextVideoVideoProcessor

    tokenizer = byte_level_tokenizer(LLAVA_SPECIALS, LlamaTokenizerFast)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in LLAVA_SPECIALS}
    size, crop_size = {"shortest_edge": crop}, {"height": crop, "width": crop}
    processor = LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(size=size, crop_size=crop_size),
        image_processor=LlavaNextImageProcessor(size=size, crop_size=crop_size,
                                                image_grid_pinpoints=[[crop, crop]]),
        tokenizer=tokenizer, chat_template=LLAVA_TEMPLATE, patch_size=14, vision_feature_select_strategy="default")
    config = LlavaNextVideoConfig(
        text_config={"model_type": "llama", **text_config(len(tokenizer), layers, hidden, heads, kv_heads)},
        vision_config={"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": crop, "patch_size": 14,
                       "projection_dim": 32},
        video_token_index=ids["<video>"], image_token_index=ids["<image>"], image_grid_pinpoints=[[crop, crop]],
        vision_feature_layer=-1, spatial_pool_stride=2, spatial_pool_mode="average")
    config.text_config.pad_token_id = ids["</s>"]
    return save_checkpoint(LlavaNextVideoForConditionalGeneration, config, processor, folder, head_std)


INTERNVL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>",
                     "<image>"]
INTERNVL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'video' %}<video>\n"
    "{% elif part['type'] == 'image' %}<image>\n{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def internvl(folder: Path, layers: int = 4, hidden: int = 64, heads: int = 4, kv_heads: int = 2,
             side: int = 112, head_std: float | None = None) -> Path:
    """A tiny InternVL (transformers-native) checkpoint folder: each frame one ``side`` x ``side`` tile,
    14 px patches, pixel shuffle 0.5."""
    from transformers import (GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration,
                              InternVLProcessor, Qwen2TokenizerFast)
    from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor

    tokenizer = byte_level_tokenizer(INTERNVL_SPECIALS, Qwen2TokenizerFast)
    tokenizer.add_special_tokens({"additional_special_tokens": INTERNVL_SPECIALS[1:]})
    tokenizer.extra_special_tokens = {"start_image_token": "<img>", "end_image_token": "</img>",
                                      "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
    tokenizer = type(tokenizer).from_pretrained(_save_and_reload(tokenizer, folder / "_tokenizer"))
    tokens = (side // 14) ** 2 // 4
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size={"height": side, "width": side}, crop_to_patches=False),
        video_processor=InternVLVideoProcessor(size={"height": side, "width": side}),
        tokenizer=tokenizer, image_seq_length=tokens, chat_template=INTERNVL_TEMPLATE)
    config = InternVLConfig(
        text_config={"model_type": "qwen2", **text_config(len(tokenizer), layers, hidden, heads, kv_heads)},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": [side, side], "patch_size": [14, 14]},
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=tokens,
        downsample_ratio=0.5, vision_feature_layer=-1)
    return save_checkpoint(InternVLForConditionalGeneration, config, processor, folder, head_std)


def _save_and_reload(tokenizer, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    return folder
