"""Code that two or more demos use: attention maths and views, images, data, uploads, thread policy.

Nothing here imports the store, the settings, the serving runtimes or Gradio.
"""
