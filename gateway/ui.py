"""The web page (Gradio), served by the gateway at `/`. Labels in Japanese, as in the original design.

It calls the same Triton pool as the HTTP API, in-process (no HTTP round trip to itself), and shows
progress as it streams in: RAG, Dart (the tags appear before painting starts), then each diffusion step.
"""

from __future__ import annotations

import html
import io
from typing import TYPE_CHECKING

import gradio as gr

from sotai.client import GenerateRequest, GenerateResult, Progress
from sotai.errors import InvalidInput, SotaiError
from sotai.limits import (
    CFG_RANGE, NUM_IMAGES_RANGE, RATINGS, SCHEDULERS, SEED_RANGE, SIZE_PRESETS, STEPS_RANGE, GenerationParams,
)

if TYPE_CHECKING:
    from .state import GatewayState

STAGE_LABELS = {"rag": "タグ候補を検索中（RAG）", "dart": "タグを補完中（Dart）", "diffusion": "画像を生成中"}
SIGNAL_LABELS = {"japanese_name": "日本語名", "alias": "別名", "gloss": "辞書の訳語", "embedding": "意味の近さ",
                 "dart": "Dartが補完", "user": "指定タグ", "prompt": "プロンプト"}
TAG_HEADERS = ["タグ", "カテゴリ", "スコア", "理由"]
SCHEDULER_LABELS = {"euler_a": "Euler a", "euler": "Euler", "dpmpp_2m_karras": "DPM++ 2M Karras"}


def size_choices(default: tuple[int, int]) -> list[str]:
    """The server's default size first (small enough for CPU), then Animagine's recommended sizes."""
    first = f"{default[0]}x{default[1]}"
    return [first] + [name for name in SIZE_PRESETS if name != first]


def reason_text(reason) -> str:
    if not isinstance(reason, dict):
        return str(reason or "")
    signal = SIGNAL_LABELS.get(reason.get("signal", ""), reason.get("signal", ""))
    span = reason.get("span", "")
    return f"「{span}」→ {signal}" if span and reason.get("signal") not in ("user", "prompt") else signal


def tag_rows(tags: list[dict]) -> list[list]:
    return [[t.get("tag", ""), t.get("category", ""), round(float(t.get("score", 0.0)), 3), reason_text(t.get("reason"))]
            for t in tags]


def progress_html(event: Progress | None, done: bool = False) -> str:
    if done:
        fraction, label = 1.0, "完了"
    elif event is None:
        fraction, label = 0.0, "準備中"
    else:
        fraction = event.fraction
        label = STAGE_LABELS.get(event.stage, event.stage)
        if event.stage == "diffusion" and event.total:
            label += f" {event.step}/{event.total}"
    percent = round(fraction * 100)
    return (f'<div class="sotai-progress" data-fraction="{fraction:.3f}">'
            f'<div style="background:#ddd;border-radius:4px;height:10px">'
            f'<div style="background:#e8618c;width:{percent}%;height:10px;border-radius:4px"></div></div>'
            f'<span>{html.escape(label)}（{percent}%）</span></div>')


def _image(png: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(png))


def build_ui(state: "GatewayState") -> gr.Blocks:
    s = state.settings
    defaults = GenerationParams.from_settings(s)
    sizes = size_choices((defaults.width, defaults.height))

    async def generate(text, cfg_scale, steps, size, num_images, negative_prompt, seed, rating, scheduler):
        width, height = (int(v) for v in size.split("x"))
        params = GenerationParams(
            steps=int(steps), cfg_scale=float(cfg_scale), width=width, height=height,
            seed=int(seed) if seed is not None else -1, negative_prompt=negative_prompt or "",
            num_images=int(num_images), scheduler=scheduler, rating=rating,
        )
        try:
            request = GenerateRequest(text=text or "", params=params).checked()
        except InvalidInput as exc:
            raise gr.Error(f"入力エラー: {exc}") from None
        rows: list[list] = []
        prompt = ""
        yield progress_html(None), None, [], rows, prompt, None
        try:
            with state.board.job(request) as job:
                async for event in state.pool.stream(job.painting(request)):  # named: skip/interrupt reach it
                    if isinstance(event, Progress):
                        job.update(event)
                        if event.tags is not None:
                            rows, prompt = tag_rows(event.tags), event.prompt or ""
                        preview = _image(event.preview) if event.preview else gr.skip()
                        yield progress_html(event), preview, gr.skip(), rows, prompt, gr.skip()
                    elif isinstance(event, GenerateResult):
                        gallery = [(_image(png), f"seed {event.seed}") for png in event.images]
                        yield progress_html(None, done=True), gr.skip(), gallery, tag_rows(event.tags), event.prompt, event.seed
        except InvalidInput as exc:
            raise gr.Error(f"入力エラー: {exc}") from None
        except SotaiError as exc:
            raise gr.Error(f"生成に失敗しました: {exc}") from None

    # delete_cache: generated PNGs Gradio keeps to serve the gallery are removed after an hour.
    with gr.Blocks(title="SotaiGenerator", analytics_enabled=False, delete_cache=(3600, 3600)) as ui:
        gr.Markdown("# SotaiGenerator\n日本語の文章から Danbooru タグを作り、アニメ調の画像を生成します。")
        if s.profile == "tiny":
            gr.Markdown("※ tiny プロファイル：ランダム重みの代替モデルのため、画像はノイズです。"
                        "本物のモデルは `make export PROFILE=animagine`（GPU ホスト）で用意します。")
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="プロンプト（生成したい画像の説明）", lines=3, elem_id="sotai-text",
                                  placeholder="例：銀髪の少女が夜の桜の下で微笑んでいる")
                with gr.Accordion("詳細設定", open=False):
                    cfg_scale = gr.Slider(*CFG_RANGE, value=defaults.cfg_scale, step=0.5, label="CFGスケール")
                    steps = gr.Slider(*STEPS_RANGE, value=defaults.steps, step=1, label="ステップ数")
                    size = gr.Dropdown(sizes, value=sizes[0], label="画像サイズ（幅x高さ）")
                    num_images = gr.Slider(*NUM_IMAGES_RANGE, value=1, step=1, label="生成枚数")
                    negative_prompt = gr.Textbox(label="ネガティブプロンプト", lines=2)
                    seed = gr.Number(value=-1, precision=0, minimum=SEED_RANGE[0], maximum=SEED_RANGE[1],
                                     label="シード（-1 でランダム）")
                    rating = gr.Dropdown(list(RATINGS), value=defaults.rating, label="レーティング")
                    scheduler = gr.Dropdown([(SCHEDULER_LABELS[k], k) for k in SCHEDULERS], value=defaults.scheduler,
                                            label="サンプラー")
                button = gr.Button("生成開始", variant="primary", elem_id="sotai-generate")
            with gr.Column():
                status = gr.HTML(progress_html(None), label="進行状況", elem_id="sotai-status")
                preview = gr.Image(label="プレビュー", type="pil", format="png", interactive=False, height=160,
                                   elem_id="sotai-preview")
                gallery = gr.Gallery(label="生成結果", format="png", columns=2, elem_id="sotai-gallery")
                tags = gr.Dataframe(headers=TAG_HEADERS, label="タグと理由", interactive=False, wrap=True,
                                    column_widths=["32%", "16%", "12%", "40%"],
                                    elem_id="sotai-tags")
                prompt = gr.Textbox(label="最終プロンプト", interactive=False, elem_id="sotai-prompt")
                seed_used = gr.Number(label="使用したシード", precision=0, interactive=False, elem_id="sotai-seed")
        button.click(
            generate,
            inputs=[text, cfg_scale, steps, size, num_images, negative_prompt, seed, rating, scheduler],
            outputs=[status, preview, gallery, tags, prompt, seed_used],
            api_visibility="private",
            concurrency_limit=None,  # Triton queues and batches; the page need not serialise users
        )
    return ui
