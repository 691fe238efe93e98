/** A minimal valid job request, to override one field at a time. */
export const validJobRequest = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  model_id: "sd15",
  controlnet_model: "canny",
  controlnet_type: "canny",
  prompt: "a lighthouse at dusk",
  control_image: "https://images.example.com/edges.png",
  ...overrides,
});
